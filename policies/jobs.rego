# Jobs: implements policies/tables/jobs.csv as read in policies/README.md.
#
# Relations: Assignee (resource.assignee), Task:owner and Task:assignee
# (resource.task.owner/assignee), Project:owner and Project:assignee
# (resource.project.owner/assignee). Rows with Strict_Privilege = True need
# the caller's privilege to be exactly the row's (worker), and no role in the
# organization.
#
# filter: every relation of `view` has a filter field (assignee_id,
# segment__task__owner_id, segment__task__assignee_id,
# segment__task__project__owner_id, segment__task__project__assignee_id); the
# organization of a job is the one of its task (segment__task__organization).
package jobs

import rego.v1

import data.utils

default allow := false

# Scopes on an existing job (or, for create, on the job to be created).
JOB_SCOPES := {
	"create", "delete", "view", "view:annotations", "view:data",
	"view:metadata", "export:annotations", "export:dataset",
	"update:state", "update:stage", "update:assignee",
	"update:annotations", "delete:annotations", "update:metadata",
	"import:annotations",
}

READ_SCOPES := {"view", "view:annotations", "view:data", "view:metadata"}

EXPORT_SCOPES := {"export:annotations", "export:dataset"}

WRITE_SCOPES := {
	"update:state", "update:annotations", "delete:annotations",
	"update:metadata", "import:annotations",
}

is_assignee if utils.is_assignee(input.resource)

is_task_owner if utils.is_owner(input.resource.task)

is_task_assignee if utils.is_assignee(input.resource.task)

is_project_owner if utils.is_owner(input.resource.project)

is_project_assignee if utils.is_assignee(input.resource.project)

# "Project:owner, Task:owner"
is_owner if is_project_owner

is_owner if is_task_owner

# "Project:owner, Project:assignee, Task:owner, Task:assignee"
is_task_staff if is_owner

is_task_staff if is_project_assignee

is_task_staff if is_task_assignee

# "Project:owner, Project:assignee, Task:owner, Task:assignee, Assignee"
is_related if is_task_staff

is_related if is_assignee

# An assignee whose privilege is exactly worker (Strict_Privilege rows),
# whatever their role in the organization.
is_worker_assignee if {
	utils.in_organization
	utils.is_privilege(utils.WORKER)
	is_assignee
}

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

# Every scope on a job: admins in the sandbox, and users who are maintainers
# or owners of the organization (this also covers the create and delete rows
# for related maintainers).
allow if {
	input.scope in JOB_SCOPES
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope in JOB_SCOPES
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# Reading and exporting: anyone related to the job in the sandbox.
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
	is_owner
}

# Changing the state, the annotations and the metadata.
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

allow if {
	input.scope in (READ_SCOPES | WRITE_SCOPES)
	is_worker_assignee
}

# update:stage, update:assignee
allow if {
	input.scope in {"update:stage", "update:assignee"}
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_task_staff
}

allow if {
	input.scope in {"update:stage", "update:assignee"}
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_task_staff
}

# create, delete
allow if {
	input.scope in {"create", "delete"}
	utils.in_sandbox
	utils.has_perm(utils.USER)
	is_task_staff
}

allow if {
	input.scope in {"create", "delete"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.SUPERVISOR)
	is_task_staff
}

# The jobs the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_sandbox
	utils.is_admin
} else := utils.EVERYTHING if {
	utils.is_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
} else := utils.any_of([{"assignee_id": utils.user_id}]) if {
	utils.is_organization
	not utils.is_org_member
	utils.is_privilege(utils.WORKER)
} else := utils.NOTHING if {
	utils.is_organization
	not utils.is_org_member
} else := utils.any_of([
	{"assignee_id": utils.user_id},
	{"segment__task__owner_id": utils.user_id},
	{"segment__task__assignee_id": utils.user_id},
	{"segment__task__project__owner_id": utils.user_id},
	{"segment__task__project__assignee_id": utils.user_id},
])

filter := utils.org_filter(visibility, ["segment__task__organization"])
