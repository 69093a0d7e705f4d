# Organizations: implements policies/tables/organizations.csv as read in
# policies/README.md. Every row has Context N/A.
#
# Relations: Owner (resource.owner, or the caller's role in the organization
# `resource.user.role` is owner), Maintainer, Supervisor, Worker (the caller's
# role in the organization, exact match). The table has no condition on
# `settings.organizations_min_role_to_create`, so create needs privilege user
# whatever the settings.
#
# filter: Owner is `owner_id`; a role in the organization is a membership,
# `members__user_id` (no row looks at whether the membership is active, so
# `members__is_active` is not used). An organization has no organization
# field, and `view` is the same in every context, so the filter has no
# organization part.
package organizations

import rego.v1

import data.utils

default allow := false

is_owner if utils.is_owner(input.resource)

is_owner if input.resource.user.role == utils.OWNER

# The caller's role in the organization is one of `roles`.
has_role(roles) if input.resource.user.role in roles

# create
allow if {
	input.scope == "create"
	utils.in_any_context
	utils.has_perm(utils.USER)
}

# list
allow if {
	input.scope == "list"
	utils.in_any_context
}

# view: admins and members
allow if {
	input.scope == "view"
	utils.in_any_context
	utils.is_admin
}

allow if {
	input.scope == "view"
	utils.in_any_context
	is_owner
}

allow if {
	input.scope == "view"
	utils.in_any_context
	has_role({utils.WORKER, utils.SUPERVISOR, utils.MAINTAINER, utils.OWNER})
}

# update, delete: admins
allow if {
	input.scope in {"update", "delete"}
	utils.in_any_context
	utils.is_admin
}

# update: the owner and maintainers
allow if {
	input.scope == "update"
	utils.in_any_context
	utils.has_perm(utils.WORKER)
	is_owner
}

allow if {
	input.scope == "update"
	utils.in_any_context
	utils.has_perm(utils.WORKER)
	has_role({utils.MAINTAINER})
}

# delete: the owner
allow if {
	input.scope == "delete"
	utils.in_any_context
	utils.has_perm(utils.WORKER)
	is_owner
}

# The organizations the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_admin
} else := utils.any_of([
	{"owner_id": utils.user_id},
	{"members__user_id": utils.user_id},
])

filter := utils.org_filter(visibility, [])
