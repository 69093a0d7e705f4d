# Events: implements policies/tables/events.csv as read in policies/README.md.
#
# filter: the contract's list form for events, a list of objects restricting
# the query parameters `user_id` and `org_id` of an events dump. The table
# only says who may dump events at all; who sees whose events is this
# package's own choice, closest to the role model:
# - admins: everything in the sandbox, the organization's events in one;
# - owners and maintainers of the organization: the organization's events;
# - everyone else: their own events, in the organization when there is one;
# - in the sandbox with an organization specified, `org_id` is null.
package events

import rego.v1

import data.utils

default allow := false

# send:events: everyone
allow if {
	input.scope == "send:events"
	utils.in_any_context
}

# dump:events: workers and above, members of the organization
allow if {
	input.scope == "dump:events"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
}

allow if {
	input.scope == "dump:events"
	utils.is_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
}

filter := [] if {
	utils.is_sandbox
	not utils.is_sandbox_with_organization
	utils.is_admin
} else := [{"org_id": null}] if {
	utils.is_sandbox_with_organization
	utils.is_admin
} else := [{"org_id": input.auth.organization.id}] if {
	utils.is_organization
	utils.is_admin
} else := [{"org_id": input.auth.organization.id}] if {
	utils.is_org_staff
} else := [{"user_id": utils.user_id, "org_id": input.auth.organization.id}] if {
	utils.is_organization
} else := [{"user_id": utils.user_id, "org_id": null}] if {
	utils.is_sandbox_with_organization
} else := [{"user_id": utils.user_id}]
