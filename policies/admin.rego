# Command authorizations: which operator may run which e2sctl command
# (docs/OPERATIONS.md, E2S §3.4 separation of duties). Default deny.
#
# input:
#   uid       the caller's uid, from SO_PEERCRED on the admin socket
#   command   the command, e.g. "policy.propose"; for approve/reject, the
#             command of the proposal being decided
#
# data.e2sgate.accounts: uid (string) → {name, roles}, from roles.yaml and
# approved role assignments.
package e2sgate.admin

import rego.v1

# The one authorization each command needs.
command_authorizations := {
	"whoami": "session",
	"proposals": "session",
	"status": "appliance.status",
	"metrics": "appliance.status",
	"compartment.restart": "appliance.control",
	"compartment.stop": "appliance.control",
	"compartment.start": "appliance.control",
	"audit.verify": "audit.read",
	"audit.tail": "audit.read",
	"audit.search": "audit.read",
	"explain": "explain",
	"policy.show": "policy.read",
	"policy.check": "policy.write",
	"policy.shadow": "policy.write",
	"policy.shadow_report": "policy.read",
	"policy.shadow_stop": "policy.write",
	"policy.propose": "policy.write",
	"policy.rollback": "policy.write",
	"role.list": "roles.read",
	"role.assign": "roles.write",
	"role.revoke": "roles.write",
	"key.show": "keys.read",
	"key.export_cert": "keys.read",
	"key.rotate": "keys.manage",
}

# What each role may do. No role holds another's authorizations: the
# auditor reads audit (and the merchant's public certificates) and changes
# nothing; the secadmin changes policy and roles but cannot read audit or
# touch keys; the keyadmin rotates the merchant key, two-person; nobody
# reads a private key.
role_authorizations := {
	"secadmin": {"session", "policy.read", "policy.write", "roles.read", "roles.write", "explain"},
	"keyadmin": {"session", "keys.read", "keys.manage"},
	"auditor": {"session", "audit.read", "explain", "keys.read"},
	"operator": {"session", "appliance.status", "appliance.control", "explain"},
	"contentmgr": {"session", "content.read", "content.write"},
}

# Sensitive acts need a proposal by one person and approval by another.
two_person := {"policy.propose", "policy.rollback", "role.assign", "role.revoke", "key.rotate"}

account := object.get(data.e2sgate.accounts, format_int(input.uid, 10), {"name": "", "roles": []})

roles := object.get(account, "roles", [])

held contains a if {
	some r in roles
	some a in role_authorizations[r]
}

default decision := {"allow": false, "reason": "adm.unknown_command", "authorization": "", "two_person": false, "roles": []}

decision := verdict(command_authorizations[input.command])

verdict(need) := {"allow": true, "reason": "adm.allowed", "authorization": need, "two_person": input.command in two_person, "roles": roles} if {
	need in held
} else := {"allow": false, "reason": "adm.no_role", "authorization": need, "two_person": false, "roles": roles} if {
	count(roles) == 0
} else := {"allow": false, "reason": "adm.authorization_missing", "authorization": need, "two_person": false, "roles": roles}
