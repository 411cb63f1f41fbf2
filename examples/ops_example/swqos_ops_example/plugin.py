"""Hook implementations of swqos-ops-example."""

from swqos_core import hookimpl
from swqos_ops_example.notes import MaintenanceNote


def _notes(app):
    return [obj for _, obj in app.layers.get("service", []) if isinstance(obj, MaintenanceNote)]


@hookimpl
def swqos_register_services(register):
    """``maintenance``: holds the note; selected with ``[pipeline] services = [..., "maintenance"]``."""
    register("maintenance", lambda settings, ctx: MaintenanceNote(), description="an operator's maintenance note")


@hookimpl
def swqos_register_admin_operations(app, register):
    """``set-maintenance-note``, served by whichever plugin serves the admin API."""
    for note in _notes(app):
        register(note.operation())


@hookimpl
def swqos_register_metrics(app, register):
    """``swqos_example_maintenance_notes_total``."""
    for note in _notes(app):
        register(note)


@hookimpl
def swqos_register_status(app, register):
    """``maintenance`` in ``/v1/status``."""
    for note in _notes(app):
        register("maintenance", note.report)
