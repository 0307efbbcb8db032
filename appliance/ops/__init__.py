"""Appliance operations: install, configuration check, doctor, backup/restore, retention.

Operations on the machine rather than use cases of the care staff: they work on files,
users, systemd units and the SQLite file itself (online backup, integrity checks), so they
live beside the services, not among them. One module per operation, each a plain function
taking the settings (or the store) and returning a report; ``appliance.commands.ops`` and
``appliance.commands.config_cmd`` print the reports. Nothing here runs at import time.

    install.py      ``ordo install``: user, directories, modes, configuration, units
    configcheck.py  ``ordo config check``: files named in the settings, FINESS, URLs
    doctor.py       ``ordo doctor``: one check per part of the appliance, with a hint
    probes.py       the small probes the doctor uses (pcscd, printer, registry, referential)
    backup.py       ``ordo backup`` / ``ordo restore``: online SQLite backup, AES-256-GCM
    retention.py    ``ordo retention run``: old prescriptions and audit entries, audited
    files.py        ownership and permission helpers shared by the others
"""
