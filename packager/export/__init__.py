"""Hand the gated rollout to another engine: `edgepack export ansible` (ansible.py)."""
from packager.export.ansible import AnsibleExport, export_ansible

__all__ = ["AnsibleExport", "export_ansible"]
