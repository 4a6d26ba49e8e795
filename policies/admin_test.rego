package e2sgate.admin_test

import rego.v1

import data.e2sgate.admin

accounts := {
	"60101": {"name": "sam", "roles": ["secadmin"]},
	"60102": {"name": "kim", "roles": ["keyadmin"]},
	"60103": {"name": "ada", "roles": ["auditor"]},
	"60104": {"name": "otto", "roles": ["operator"]},
	"60105": {"name": "cora", "roles": ["contentmgr"]},
}

decide(uid, cmd) := d if {
	d := admin.decision with input as {"uid": uid, "command": cmd} with data.e2sgate.accounts as accounts
}

test_secadmin_proposes_policy_with_two_persons if {
	d := decide(60101, "policy.propose")
	d.allow
	d.two_person
	d.authorization == "policy.write"
}

test_secadmin_cannot_read_audit if {
	d := decide(60101, "audit.search")
	not d.allow
	d.reason == "adm.authorization_missing"
	d.authorization == "audit.read"
}

test_auditor_reads_audit_only if {
	decide(60103, "audit.verify").allow
	not decide(60103, "policy.check").allow
	not decide(60103, "compartment.restart").allow
}

test_keyadmin_no_policy if {
	decide(60102, "whoami").allow
	not decide(60102, "policy.show").allow
}

test_operator_restarts_but_no_policy if {
	decide(60104, "compartment.restart").allow
	not decide(60104, "policy.propose").allow
}

test_contentmgr_content_only if {
	decide(60105, "whoami").allow
	not decide(60105, "status").allow
}

test_root_has_no_role if {
	d := decide(0, "status")
	not d.allow
	d.reason == "adm.no_role"
}

test_unknown_command_denied if {
	d := decide(60101, "shell")
	not d.allow
	d.reason == "adm.unknown_command"
}

test_every_command_belongs_to_a_role if {
	every need in admin.command_authorizations {
		some _, auths in admin.role_authorizations
		need in auths
	}
}

test_keyadmin_rotates_with_two_persons if {
	d := decide(60102, "key.rotate")
	d.allow
	d.two_person
	d.authorization == "keys.manage"
	decide(60102, "key.show").allow
	decide(60102, "key.export_cert").allow
}

test_auditor_reads_keys_but_does_not_rotate if {
	decide(60103, "key.show").allow
	decide(60103, "key.export_cert").allow
	d := decide(60103, "key.rotate")
	not d.allow
	d.authorization == "keys.manage"
}

test_others_have_no_key_commands if {
	every uid in [60101, 60104, 60105] {
		every cmd in ["key.show", "key.export_cert", "key.rotate"] {
			not decide(uid, cmd).allow
		}
	}
}
