# Projects: implements policies/tables/projects.csv as read in
# policies/README.md.
#
# Relations: Owner (resource.owner), Assignee (resource.assignee).
# filter: every relation of `view` has a filter field (owner_id, assignee_id,
# organization).
package projects

import rego.v1

import data.utils

default allow := false

# Scopes on an existing project.
PROJECT_SCOPES := {
	"view", "delete", "update:desc", "update:assignee", "update:owner",
	"export:annotations", "export:dataset", "export:backup",
	"import:dataset", "update:associated_storage",
}

EXPORT_SCOPES := {"export:annotations", "export:dataset", "export:backup"}

is_owner if utils.is_owner(input.resource)

is_assignee if utils.is_assignee(input.resource)

# "Owner, Assignee"
is_related if is_owner

is_related if is_assignee

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

# create, import:backup
allow if {
	input.scope in {"create", "import:backup"}
	utils.in_sandbox
	utils.has_perm(utils.USER)
}

allow if {
	input.scope in {"create", "import:backup"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.SUPERVISOR)
}

# Every scope on an existing project: admins in the sandbox, and users who
# are maintainers or owners of the organization.
allow if {
	input.scope in PROJECT_SCOPES
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope in PROJECT_SCOPES
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# view and exports
allow if {
	input.scope in (EXPORT_SCOPES | {"view"})
	utils.in_sandbox
	is_related
}

allow if {
	input.scope == "view"
	utils.in_organization
	utils.has_org_role(utils.WORKER)
	is_related
}

allow if {
	input.scope in EXPORT_SCOPES
	utils.in_organization
	utils.has_org_role(utils.SUPERVISOR)
	is_related
}

allow if {
	input.scope in EXPORT_SCOPES
	utils.in_organization
	utils.has_org_role(utils.WORKER)
	is_owner
}

# update:desc, import:dataset
allow if {
	input.scope in {"update:desc", "import:dataset"}
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_related
}

allow if {
	input.scope in {"update:desc", "import:dataset"}
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_related
}

# delete, update:assignee, update:associated_storage: the owner
allow if {
	input.scope in {"delete", "update:assignee", "update:associated_storage"}
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_owner
}

allow if {
	input.scope in {"delete", "update:assignee", "update:associated_storage"}
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_owner
}

# update:owner: the owner needs to be a maintainer in an organization
allow if {
	input.scope == "update:owner"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.MAINTAINER)
	is_owner
}

# update:associated_storage: admins in an organization, whatever their role
allow if {
	input.scope == "update:associated_storage"
	utils.in_organization
	utils.is_admin
}

# The projects the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_sandbox
	utils.is_admin
} else := utils.EVERYTHING if {
	utils.is_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
} else := utils.NOTHING if {
	utils.is_organization
	not utils.is_org_member
} else := utils.any_of([
	{"owner_id": utils.user_id},
	{"assignee_id": utils.user_id},
])

filter := utils.org_filter(visibility, ["organization"])
