package e2sgate.gate_test

import rego.v1

import data.e2sgate.gate

catalogue := {
	"caller": "outside", "caller_label": "restricted:web",
	"target": "purchasing", "target_label": "confidential:shop",
	"script": "purchasing/catalogue", "method": "GET",
	"registration": {"callers": ["outside"], "clearance": "unclassified", "roles": []},
	"user": {"name": "", "roles": []},
}

sign := {
	"caller": "purchasing", "caller_label": "confidential:shop",
	"target": "keyhandler", "target_label": "secret:keys,shop",
	"script": "keyhandler/sign-offer", "method": "POST",
	"registration": {"callers": ["purchasing"], "clearance": "confidential:shop", "roles": []},
	"user": {"name": "", "roles": []},
}

test_public_catalogue_allowed if {
	d := gate.decision with input as catalogue
	d.allow
	d.reason == "pol.allowed"
	d.obligations.response_filters == ["pan_mask"]
}

test_purchasing_may_sign if {
	d := gate.decision with input as sign
	d.allow
	d.obligations == {}
}

test_outside_may_not_sign if {
	d := gate.decision with input as object.union(sign, {"caller": "outside", "caller_label": "restricted:web"})
	not d.allow
	d.reason == "pol.caller_clearance"
}

test_listed_caller_without_clearance_denied if {
	reg := object.union(sign.registration, {"callers": ["purchasing", "payment"]})
	d := gate.decision with input as object.union(sign, {"caller": "payment", "caller_label": "confidential:pay", "registration": reg})
	not d.allow
	d.reason == "pol.caller_clearance"
}

test_unlisted_caller_denied_even_with_clearance if {
	d := gate.decision with input as object.union(sign, {"caller": "inside", "caller_label": "secret:keys,shop"})
	not d.allow
	d.reason == "pol.caller_not_permitted"
}

test_target_never_receives_above_its_label if {
	reg := object.union(catalogue.registration, {"clearance": "secret:keys"})
	d := gate.decision with input as object.union(catalogue, {"caller_label": "secret:keys", "registration": reg})
	not d.allow
	d.reason == "pol.target_clearance"
}

test_missing_role_denied if {
	reg := object.union(catalogue.registration, {"roles": ["buyer"]})
	d := gate.decision with input as object.union(catalogue, {"registration": reg, "user": {"name": "buyer:00ff", "roles": []}})
	not d.allow
	d.reason == "pol.role_missing"
}

test_role_held_allowed if {
	reg := object.union(catalogue.registration, {"roles": ["buyer"]})
	d := gate.decision with input as object.union(catalogue, {"registration": reg, "user": {"name": "alice", "roles": ["buyer"]}})
	d.allow
}

test_empty_input_denied if {
	d := gate.decision with input as {}
	not d.allow
}

# The purchasing protocol: the contract's countersignature and the
# protected delivery are made by the key handler for purchasing only.
countersign := object.union(sign, {
	"script": "keyhandler/countersign",
	"registration": {"callers": ["purchasing"], "clearance": "confidential:shop", "roles": []},
})

test_purchasing_may_countersign if {
	d := gate.decision with input as countersign
	d.allow
}

test_outside_may_not_countersign_or_protect if {
	some script in ["keyhandler/countersign", "keyhandler/protect"]
	d := gate.decision with input as object.union(countersign, {"script": script, "caller": "outside", "caller_label": "restricted:web"})
	not d.allow
	d.reason == "pol.caller_clearance"
}

test_payment_may_not_countersign if {
	d := gate.decision with input as object.union(countersign, {"caller": "payment", "caller_label": "confidential:pay"})
	not d.allow
}

# Delivery is confirmed by the back office through inside, never from the
# Internet.
delivered := {
	"caller": "inside", "caller_label": "confidential:internal",
	"target": "purchasing", "target_label": "confidential:shop",
	"script": "purchasing/delivered", "method": "POST",
	"registration": {"callers": ["inside"], "clearance": "unclassified", "roles": []},
	"user": {"name": "", "roles": []},
}

test_inside_may_confirm_delivery if {
	d := gate.decision with input as delivered
	d.allow
	d.obligations == {}
}

test_outside_may_not_confirm_delivery if {
	d := gate.decision with input as object.union(delivered, {"caller": "outside", "caller_label": "restricted:web"})
	not d.allow
	d.reason == "pol.caller_not_permitted"
}

# payment/authorize (and capture, limits): purchasing only, clearance
# "confidential", which outside (restricted:web) does not dominate.
authorize := {
	"caller": "purchasing", "caller_label": "confidential:shop",
	"target": "payment", "target_label": "confidential:pay",
	"script": "payment/authorize", "method": "POST",
	"registration": {"callers": ["purchasing"], "clearance": "confidential", "roles": []},
	"user": {"name": "", "roles": []},
}

test_purchasing_may_authorize_payment if {
	d := gate.decision with input as authorize
	d.allow
	d.obligations == {}
}

test_outside_may_not_authorize_payment if {
	d := gate.decision with input as object.union(authorize, {"caller": "outside", "caller_label": "restricted:web"})
	not d.allow
	d.reason == "pol.caller_clearance"
}

test_outside_listed_still_lacks_clearance_for_payment if {
	reg := object.union(authorize.registration, {"callers": ["purchasing", "outside"]})
	d := gate.decision with input as object.union(authorize, {"caller": "outside", "caller_label": "restricted:web", "registration": reg})
	not d.allow
	d.reason == "pol.caller_clearance"
}

test_inside_may_not_call_payment if {
	d := gate.decision with input as object.union(authorize, {"caller": "inside", "caller_label": "confidential:internal"})
	not d.allow
	d.reason == "pol.caller_not_permitted"
}

test_purchasing_may_hand_order_to_inside if {
	d := gate.decision with input as object.union(authorize, {
		"target": "inside", "target_label": "confidential:internal", "script": "inside/order",
	})
	d.allow
}

# The user is the proven person (the gate clears outside's claim): a script
# that requires roles refuses a call without one (test_missing_role_denied:
# and one whose person lacks the role).
test_roles_need_a_proven_user if {
	reg := object.union(catalogue.registration, {"roles": ["buyer"]})
	d := gate.decision with input as object.union(catalogue, {"registration": reg})
	not d.allow
	d.reason == "pol.no_proven_user"
}

test_roles_held_by_the_proven_user if {
	reg := object.union(sign.registration, {"roles": ["buyer"]})
	d := gate.decision with input as object.union(sign, {"registration": reg, "user": {"name": "buyer:00ff", "roles": ["buyer"]}})
	d.allow
}

# A user alone changes nothing where no role is required.
test_user_name_alone_grants_nothing if {
	d := gate.decision with input as object.union(sign, {"caller": "outside", "caller_label": "restricted:web", "user": {"name": "buyer:00ff", "roles": []}})
	not d.allow
	d.reason == "pol.caller_clearance"
}
