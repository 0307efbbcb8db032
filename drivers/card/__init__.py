"""CPS card: over PC/SC with Ordo's APDUs, reader layer (``pcsc``), supervised monitor
(``monitor``), the APDU subset (``apdu``, ``cps``; see ``PROTOCOL.md``), the virtual card for
vpcd (``virtual``); or through a PKCS#11 module (``pkcs11``: OpenSC, the ANS middleware).
``appliance.bootstrap.card_backend`` picks one from the settings. Test material: the test PKI
(``pki``) and its cards as SoftHSM2 tokens (``softhsm``)."""
