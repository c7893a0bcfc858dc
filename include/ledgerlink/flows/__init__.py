"""Each exchange as a few plain steps (extract, gate, load, reconcile and report) that a DAG wires together.

Steps hand each other small dicts (safe for XCom) and keep the data itself in staged Arrow IPC files.
"""
