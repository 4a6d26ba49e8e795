# The gate agent's decision for one call. Default deny.
#
# input:
#   caller, target            compartment names (caller from the connection)
#   caller_label, target_label labels from the supervisor's config
#   script, method
#   registration              {callers, clearance, roles} of the script
#   user                      {name, roles}: the person the call is for, as
#                             proven to the gate; name is "" when the caller
#                             may not prove identity (outside: its user is
#                             only a claim, kept as the record's
#                             claimed_user) or proved none. A compartment
#                             that checked a person's signature (manifest
#                             ProvesIdentity: purchasing) names the person on
#                             the calls it makes for them.
#
# Labels are compared with the builtin e2s.dominates(a, b), implemented once
# in Go (compartments/label).
package e2sgate.gate

import rego.v1

default decision := {"allow": false, "reason": "pol.default_deny", "obligations": {}}

decision := {"allow": true, "reason": "pol.allowed", "obligations": obligations} if {
	count(denials) == 0
}

decision := {"allow": false, "reason": first_denial, "obligations": {}} if {
	count(denials) > 0
}

# The first denial in sort order names the decision; all are in the audit
# record's detail.
first_denial := sort(denials)[0]

# Only the callers the registration names may use a script.
denials contains "pol.caller_not_permitted" if {
	not input.caller in input.registration.callers
}

# The caller's label must dominate the clearance of the script.
denials contains "pol.caller_clearance" if {
	not e2s.dominates(input.caller_label, input.registration.clearance)
}

# A target never receives data above its own label.
denials contains "pol.target_clearance" if {
	not e2s.dominates(input.target_label, input.registration.clearance)
}

# A script that requires roles is for a known person: without a proven
# user there is no one to hold them (sorts before pol.role_missing).
denials contains "pol.no_proven_user" if {
	count(object.get(input.registration, "roles", [])) > 0
	object.get(input, ["user", "name"], "") == ""
}

# Every role the registration requires must be held by the user.
denials contains "pol.role_missing" if {
	some role in input.registration.roles
	not role in object.get(input, ["user", "roles"], [])
}

# Answers going out to the Internet-facing compartment pass the card-number
# mask, whatever the registration says.
obligations := {"response_filters": ["pan_mask"]} if input.caller == "outside"

obligations := {} if input.caller != "outside"
