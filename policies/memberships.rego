# Memberships: implements policies/tables/memberships.csv as read in
# policies/README.md.
#
# Relations: Self (resource.user, the member). Limit: resource.role, the
# member's current role.
#
# filter: Self is `user`; the organization field is `organization`. No row
# depends on whether the membership is active, so `is_active` is not used.
package memberships

import rego.v1

import data.utils

default allow := false

is_self if input.resource.user.id == utils.user_id

# list
allow if {
	input.scope == "list"
	utils.in_sandbox
}

allow if {
	input.scope == "list"
	utils.in_organization
	utils.has_org_role(utils.WORKER)
}

# view: admins and the member in the sandbox, every member in an organization
allow if {
	input.scope == "view"
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope == "view"
	utils.in_sandbox
	is_self
}

allow if {
	input.scope == "view"
	utils.in_organization
	utils.has_org_role(utils.WORKER)
}

# change:role, delete: owners may manage every member but the owner,
# maintainers every member below maintainer
allow if {
	input.scope in {"change:role", "delete"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.OWNER)
	input.resource.role != utils.OWNER
}

allow if {
	input.scope in {"change:role", "delete"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
	role := input.resource.role
	not role in {utils.MAINTAINER, utils.OWNER}
}

# delete: members may leave, except the owner
allow if {
	input.scope == "delete"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_self
	input.resource.role != utils.OWNER
}

# The memberships the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_sandbox
	utils.is_admin
} else := utils.EVERYTHING if {
	utils.is_org_member
} else := utils.NOTHING if {
	utils.is_organization
} else := utils.any_of([{"user": utils.user_id}])

filter := utils.org_filter(visibility, ["organization"])
