"""Printers: order layout (``layout``), ESC/POS printers by URI (``escpos``), the PDF
(``pdf``) and a TCP ESC/POS printer emulator for tests and demonstrations (``emulator``)."""
