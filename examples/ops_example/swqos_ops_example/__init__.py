"""Example third-party swqos plugin: a maintenance note operators set through the admin API.

It shows the two contribution hooks a plugin uses to take part in operations without knowing who
serves them: ``swqos_register_admin_operations`` (``set-maintenance-note``) and
``swqos_register_metrics`` (``swqos_example_maintenance_notes_total``), plus a status section.
"""
