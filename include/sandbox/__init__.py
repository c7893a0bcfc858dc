"""Local stand-ins of the systems Ledgerlink connects, written from their protocols (DESIGN §8).

Nothing here imports ``ledgerlink``: the only bridge is configuration (ports and Airflow Connections).
"""
