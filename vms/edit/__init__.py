"""The VM hardware editor: vCPUs and memory, disks and CD-ROM media, NICs, boot order, name and description.

`checks` validates each action's untrusted parameters from the database; `handlers` registers the
actions (group "hardware") and the operations that carry them out; `selectors` reads what the VM
page's Hardware tab shows. Importing this package registers the actions.
"""

from vms.edit import handlers  # noqa: F401  (registers the hardware actions and their operation kinds)
