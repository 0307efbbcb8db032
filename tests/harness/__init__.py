"""Fault harnesses that prove the appliance's claims under crashes and a hostile network.

- ``workers``: what runs in the forked children (prescribe, print, sync, produce), each on
  its own SQLite connection, meant to be killed with SIGKILL at any moment;
- ``checks``: the invariants read back from the store, the printer emulator and the
  registry (all or nothing, signatures, print copies, exactly once);
- ``crash``: the seeded SIGKILL trials (``python -m bench.chaos crash``);
- ``chaos``: thousands of prescriptions through a faulty registry
  (``python -m bench.chaos registry``).

Children are forked from a ``multiprocessing`` fork server that imported ``workers`` once,
so each one starts in milliseconds instead of the ~1 s of a fresh Python here.
"""
