# Webhooks: implements policies/tables/webhooks.csv as read in
# policies/README.md.
#
# Relations: owner (resource.owner), Project:owner (resource.project.owner).
# filter: every relation of `view` has a filter field (owner_id,
# project__owner_id); the organization field is `organization`.
package webhooks

import rego.v1

import data.utils

default allow := false

WEBHOOK_SCOPES := {"create@project", "view", "update", "delete"}

is_owner if utils.is_owner(input.resource)

is_project_owner if utils.is_owner(input.resource.project)

# "Project:owner, owner"
is_related if is_project_owner

is_related if is_owner

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

# Admins in the sandbox, and maintainers or owners of the organization.
allow if {
	input.scope in WEBHOOK_SCOPES
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope in (WEBHOOK_SCOPES | {"create@organization"})
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.MAINTAINER)
}

# create@project: the owner of the project
allow if {
	input.scope == "create@project"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_project_owner
}

allow if {
	input.scope == "create@project"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_project_owner
}

# create@organization: admins, whatever their role in the organization
allow if {
	input.scope == "create@organization"
	utils.in_organization
	utils.is_admin
}

# view
allow if {
	input.scope == "view"
	utils.in_sandbox
	is_related
}

allow if {
	input.scope == "view"
	utils.in_organization
	utils.has_org_role(utils.WORKER)
	is_related
}

# update, delete
allow if {
	input.scope in {"update", "delete"}
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_related
}

allow if {
	input.scope in {"update", "delete"}
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_related
}

# The webhooks the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_sandbox
	utils.is_admin
} else := utils.EVERYTHING if {
	utils.is_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.MAINTAINER)
} else := utils.NOTHING if {
	utils.is_organization
	not utils.is_org_member
} else := utils.any_of([
	{"owner_id": utils.user_id},
	{"project__owner_id": utils.user_id},
])

filter := utils.org_filter(visibility, ["organization"])
