"""Turkish e-invoice stand-ins: a simulated GİB and two integrators whose APIs differ on purpose.

``gib.Gib`` is shared by both integrators (``rest_integrator``, ``soap_integrator``), so an invoice UUID
(ETTN) registered through one is rejected with 1163 by the other, as the real GİB does.
"""
