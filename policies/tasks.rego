# Tasks: implements policies/tables/tasks.csv as read in policies/README.md.
#
# Relations: Owner (resource.owner), Assignee (resource.assignee),
# Project:owner and Project:assignee (resource.project.owner/assignee).
# In the sandbox with an organization specified, neither the task's nor its
# project's organization may be set.
#
# filter: the organization part matches `organization` or
# `project__organization` (the contract's form). `view` only checks the
# task's own organization, so the two agree as long as a task lies in the
# organization of its project, as it always does in CVAT; a task whose own
# organization differs from its project's cannot be told apart with an OR of
# the two fields.
package tasks

import rego.v1

import data.utils

default allow := false

# Scopes on an existing task.
TASK_SCOPES := {
	"view", "view:annotations", "view:data", "view:metadata",
	"export:dataset", "export:annotations", "export:backup",
	"update:desc", "update:annotations", "delete:annotations",
	"update:metadata", "upload:data", "import:annotations",
	"update:owner", "update:assignee", "update:project", "delete",
	"update:associated_storage",
}

READ_SCOPES := {"view", "view:annotations", "view:data", "view:metadata"}

EXPORT_SCOPES := {"export:dataset", "export:annotations", "export:backup"}

WRITE_SCOPES := {
	"update:desc", "update:annotations", "delete:annotations",
	"update:metadata", "upload:data", "import:annotations",
}

REASSIGN_SCOPES := {"update:owner", "update:assignee", "update:project", "delete"}

# Relations of the Ownership column.
is_owner if utils.is_owner(input.resource)

is_assignee if utils.is_assignee(input.resource)

is_project_owner if utils.is_owner(input.resource.project)

is_project_assignee if utils.is_assignee(input.resource.project)

# "Project:owner, Project:assignee"
is_project_staff if is_project_owner

is_project_staff if is_project_assignee

# "Owner, Project:owner"
is_owner_or_project_owner if is_owner

is_owner_or_project_owner if is_project_owner

# "Owner, Project:owner, Project:assignee"
is_owner_or_project_staff if is_owner_or_project_owner

is_owner_or_project_staff if is_project_assignee

# "Owner, Project:owner, Assignee, Project:assignee"
is_related if is_owner_or_project_staff

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

# create@project
allow if {
	input.scope == "create@project"
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope == "create@project"
	utils.in_sandbox
	utils.has_perm(utils.USER)
	is_project_staff
}

allow if {
	input.scope == "create@project"
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.SUPERVISOR)
}

allow if {
	input.scope == "create@project"
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.WORKER)
	is_project_staff
}

# Every scope on an existing task: admins in the sandbox, and users who are
# maintainers or owners of the organization.
allow if {
	input.scope in TASK_SCOPES
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope in TASK_SCOPES
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# Reading and exporting: anyone related to the task in the sandbox.
allow if {
	input.scope in (READ_SCOPES | EXPORT_SCOPES)
	utils.in_sandbox
	is_related
}

allow if {
	input.scope in READ_SCOPES
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
	is_owner_or_project_owner
}

# Changing the data and the annotations.
allow if {
	input.scope in WRITE_SCOPES
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_related
}

allow if {
	input.scope in WRITE_SCOPES
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_related
}

# Changing the owner, the assignee or the project, and deleting.
allow if {
	input.scope in REASSIGN_SCOPES
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_owner_or_project_staff
}

allow if {
	input.scope in REASSIGN_SCOPES
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_owner_or_project_staff
}

# update:associated_storage
allow if {
	input.scope == "update:associated_storage"
	utils.in_organization
	utils.is_admin
}

allow if {
	input.scope == "update:associated_storage"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_owner_or_project_owner
}

allow if {
	input.scope == "update:associated_storage"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_owner_or_project_owner
}

# The tasks the caller may view (scope `view`).
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
	{"project__owner_id": utils.user_id},
	{"project__assignee_id": utils.user_id},
])

filter := utils.org_filter(visibility, ["organization", "project__organization"])
