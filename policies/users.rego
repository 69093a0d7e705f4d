# Users: implements policies/tables/users.csv as read in policies/README.md.
#
# Relations: Self (resource.id). Limit: resource.membership.role, the role of
# the viewed user in the request's organization. A user record carries no
# organization, so Organization rows have no "resource in the request's
# organization" check here.
#
# filter: Self is `id`; the organization field is
# `memberships__organization` (the viewed user is a member of the
# organization). The `view` row for Self has Context N/A, so a caller who is
# not a member of the request's organization may still view their own record:
# for such a caller the organization part admits `{"id": <caller>}` too.
package users

import rego.v1

import data.utils

default allow := false

is_self if input.resource.id == utils.user_id

# list
allow if {
	input.scope == "list"
	utils.in_sandbox
}

allow if {
	input.scope == "list"
	utils.is_organization
	utils.has_org_role(utils.WORKER)
}

# view: admins in the sandbox, oneself, and the members of one's organization
allow if {
	input.scope == "view"
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope == "view"
	utils.in_any_context
	is_self
}

allow if {
	input.scope == "view"
	utils.is_organization
	utils.has_org_role(utils.WORKER)
	input.resource.membership.role != null
}

# Account changes: admins, and oneself for personal data and deletion.
allow if {
	input.scope in {"update:email", "update:permissions", "update:personal_data", "delete"}
	utils.in_any_context
	utils.is_admin
}

allow if {
	input.scope in {"update:personal_data", "delete"}
	utils.in_any_context
	is_self
}

# The users the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_sandbox
	utils.is_admin
} else := utils.EVERYTHING if {
	utils.is_org_member
} else := utils.any_of([{"id": utils.user_id}])

filter := ["&", visibility, org_part, "org_filter_proof"] if {
	utils.is_organization
	not utils.is_org_member
	org_part := utils.any_of([{"memberships__organization": input.auth.organization.id}, {"id": utils.user_id}])
} else := utils.org_filter(visibility, ["memberships__organization"])
