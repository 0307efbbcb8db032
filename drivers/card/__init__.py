"""CPS card over PC/SC: reader layer (``pcsc``), supervised monitor (``monitor``), the APDU
subset (``apdu``, ``cps``; see ``PROTOCOL.md``), the virtual card for vpcd (``virtual``) and
the test PKI (``pki``)."""
