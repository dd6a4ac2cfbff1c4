"""Which catalog actions the emulator records without running, and why (``losant-async emulator --coverage``)."""

from __future__ import annotations

from .app_transfer import NOT_RUN_FETCH
from .device_summaries import NOT_RUN_ARCHIVE
from .executions import NOT_RUN_NOTEBOOK, NOT_RUN_RESOURCE_JOB
from .lifecycle import NOT_RUN_FLOW
from .operations import NOT_RUN_EDGE, NOT_RUN_EMBEDDED, NOT_RUN_REPORT, NOT_RUN_RULE

__all__ = ["NOT_RUN"]

_METERING = "usage metering is not emulated: the counts answer zero"
_NO_FLOWS = "no workflow runs in the emulator: no errors, stats or logs beyond recorded presses"
_NO_LINKS = "resource links are not analysed: no linked resources are reported"

NOT_RUN: dict[str, str] = {
    # writes that need a subsystem the emulator does not have: recorded with a truthful status
    "notebook.execute": NOT_RUN_NOTEBOOK,
    "notebook.request_input_data_export": NOT_RUN_NOTEBOOK,
    "resource_job.execute": NOT_RUN_RESOURCE_JOB,
    "flow.press_virtual_button": NOT_RUN_FLOW,
    "edge_deployments.release": NOT_RUN_EDGE,
    "edge_deployments.remove": NOT_RUN_EDGE,
    "edge_deployments.replace": NOT_RUN_EDGE,
    "embedded_deployments.release": NOT_RUN_EMBEDDED,
    "embedded_deployments.remove": NOT_RUN_EMBEDDED,
    "embedded_deployments.replace": NOT_RUN_EMBEDDED,
    "embedded_deployments.export": NOT_RUN_EMBEDDED,
    "dashboard.send_report": NOT_RUN_REPORT,
    "application_dashboard.send_report": NOT_RUN_REPORT,
    "instance.generate_report": NOT_RUN_REPORT,
    "instance_notification_rule.evaluate": NOT_RUN_RULE,
    "me.verify_email": "the emulator sends no email: the verification mail is recorded in its outbox",
    "application.apply_template": "the emulator holds no application templates: a templateId answers 404",
    "application.archive_data": NOT_RUN_ARCHIVE,
    "application.backfill_archive_data": NOT_RUN_ARCHIVE,
    "application.full_data_tables_archive": NOT_RUN_ARCHIVE,
    "application.full_events_archive": NOT_RUN_ARCHIVE,
    # reads of what only a missing subsystem produces: answered truthfully empty
    "application.api_import": NOT_RUN_FETCH + " (bundles and other applications import fully)",
    "application.device_counts": _METERING,
    "application.notebook_minute_counts": _METERING,
    "application.payload_counts": _METERING,
    "application.payload_counts_breakdown": _METERING,
    "applications.period_summaries": _METERING,
    "device.payload_counts": _METERING,
    "device.payload_counts_breakdown": _METERING,
    "instance.device_counts": _METERING,
    "instance.historical_summaries": _METERING,
    "instance.notebook_minute_counts": _METERING,
    "instance.payload_counts": _METERING,
    "instance.payload_counts_breakdown": _METERING,
    "instance_org.device_counts": _METERING,
    "instance_org.notebook_minute_counts": _METERING,
    "instance_org.payload_counts": _METERING,
    "instance_org.payload_counts_breakdown": _METERING,
    "instance_sandbox.device_counts": _METERING,
    "instance_sandbox.notebook_minute_counts": _METERING,
    "instance_sandbox.payload_counts": _METERING,
    "instance_sandbox.payload_counts_breakdown": _METERING,
    "me.device_counts": _METERING,
    "me.notebook_minute_counts": _METERING,
    "me.payload_counts": _METERING,
    "me.payload_counts_breakdown": _METERING,
    "notebook.notebook_minute_counts": _METERING,
    "org.device_counts": _METERING,
    "org.notebook_minute_counts": _METERING,
    "org.payload_counts": _METERING,
    "org.payload_counts_breakdown": _METERING,
    "flow.errors": _NO_FLOWS,
    "flow.stats": _NO_FLOWS,
    "flow_version.errors": _NO_FLOWS,
    "flow_version.stats": _NO_FLOWS,
    "flows.palette": "no custom nodes run in the emulator: the palette lists none",
    "instance_custom_node.errors": _NO_FLOWS,
    "instance_custom_node.stats": _NO_FLOWS,
    "instance_notification_rule.logs": NOT_RUN_RULE,
    "experience_endpoints.stats": "the emulator serves no experience endpoints: zero requests",
    "credential.linked_resources": _NO_LINKS,
    "experience_endpoint.linked_resources": _NO_LINKS,
    "experience_view.linked_resources": _NO_LINKS,
    "auth.sso_domain": "the emulator has no single sign-on: no domain has SSO",
    "application_templates.get_categories": "the emulator holds no application templates: no categories",
    "application_templates.get_unique_keywords": "the emulator holds no application templates: no keywords",
}
