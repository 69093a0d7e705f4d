# Issues: implements policies/tables/issues.csv as read in policies/README.md.
#
# Relations: Owner and Assignee (resource.owner/assignee), Job:assignee
# (resource.job.assignee), Task:owner and Task:assignee
# (resource.task.owner/assignee), Project:owner and Project:assignee
# (resource.project.owner/assignee). For create@job the resource is the
# issue to be created, with its job, task and project.
#
# filter: every relation of `view` has a filter field (owner, assignee,
# job__assignee, job__segment__task__owner/assignee,
# job__segment__task__project__owner/assignee); the organization of an issue
# is the one of its task (job__segment__task__organization).
package issues

import rego.v1

import data.utils

default allow := false

ISSUE_SCOPES := {"create@job", "view", "update", "delete"}

is_owner if utils.is_owner(input.resource)

is_assignee if utils.is_assignee(input.resource)

is_job_assignee if utils.is_assignee(input.resource.job)

is_task_owner if utils.is_owner(input.resource.task)

is_task_assignee if utils.is_assignee(input.resource.task)

is_project_owner if utils.is_owner(input.resource.project)

is_project_assignee if utils.is_assignee(input.resource.project)

# "Project:owner, Project:assignee, Task:owner, Task:assignee"
is_task_staff if is_project_owner

is_task_staff if is_project_assignee

is_task_staff if is_task_owner

is_task_staff if is_task_assignee

# "Project:owner, Project:assignee, Task:owner, Task:assignee, Job:assignee"
is_job_staff if is_task_staff

is_job_staff if is_job_assignee

# ... "Owner, Assignee"
is_related if is_job_staff

is_related if is_owner

is_related if is_assignee

# "Project:owner, Project:assignee, Task:owner, Task:assignee, Owner"
can_delete if is_task_staff

can_delete if is_owner

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

# Every scope: admins in the sandbox, and users who are maintainers or owners
# of the organization.
allow if {
	input.scope in ISSUE_SCOPES
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope in ISSUE_SCOPES
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# create@job
allow if {
	input.scope == "create@job"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_job_staff
}

allow if {
	input.scope == "create@job"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_job_staff
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

# update
allow if {
	input.scope == "update"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_related
}

allow if {
	input.scope == "update"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_related
}

# delete
allow if {
	input.scope == "delete"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	can_delete
}

allow if {
	input.scope == "delete"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	can_delete
}

# The issues the caller may view (scope `view`).
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
	{"owner": utils.user_id},
	{"assignee": utils.user_id},
	{"job__assignee": utils.user_id},
	{"job__segment__task__owner": utils.user_id},
	{"job__segment__task__assignee": utils.user_id},
	{"job__segment__task__project__owner": utils.user_id},
	{"job__segment__task__project__assignee": utils.user_id},
])

filter := utils.org_filter(visibility, ["job__segment__task__organization"])
