"""Hardware adapters: the CPS card over PC/SC and the printers."""
