# Comments: implements policies/tables/comments.csv as read in
# policies/README.md.
#
# Relations: Owner (resource.owner), Issue:owner and Issue:assignee
# (resource.issue.owner/assignee), Job:assignee (resource.job.assignee),
# Task:owner and Task:assignee (resource.task.owner/assignee), Project:owner
# and Project:assignee (resource.project.owner/assignee). For create@issue
# the resource is the comment to be created, with its issue, job, task and
# project.
#
# filter: every relation of `view` has a filter field (owner, issue__owner,
# issue__assignee, issue__job__assignee, issue__job__segment__task__owner/
# assignee, issue__job__segment__task__project__owner/assignee); the
# organization of a comment is the one of its task
# (issue__job__segment__task__organization).
package comments

import rego.v1

import data.utils

default allow := false

COMMENT_SCOPES := {"create@issue", "view", "update", "delete"}

is_owner if utils.is_owner(input.resource)

is_issue_owner if utils.is_owner(input.resource.issue)

is_issue_assignee if utils.is_assignee(input.resource.issue)

is_job_assignee if utils.is_assignee(input.resource.job)

is_task_owner if utils.is_owner(input.resource.task)

is_task_assignee if utils.is_assignee(input.resource.task)

is_project_owner if utils.is_owner(input.resource.project)

is_project_assignee if utils.is_assignee(input.resource.project)

# "Project:owner, Project:assignee, Task:owner, Task:assignee, Job:assignee,
#  Issue:owner, Issue:assignee"
is_issue_staff if is_project_owner

is_issue_staff if is_project_assignee

is_issue_staff if is_task_owner

is_issue_staff if is_task_assignee

is_issue_staff if is_job_assignee

is_issue_staff if is_issue_owner

is_issue_staff if is_issue_assignee

# ... "Owner"
is_related if is_issue_staff

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

# Every scope: admins in the sandbox, and users who are maintainers or owners
# of the organization.
allow if {
	input.scope in COMMENT_SCOPES
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope in COMMENT_SCOPES
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# create@issue
allow if {
	input.scope == "create@issue"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_issue_staff
}

allow if {
	input.scope == "create@issue"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_issue_staff
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

# The comments the caller may view (scope `view`).
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
	{"issue__owner": utils.user_id},
	{"issue__assignee": utils.user_id},
	{"issue__job__assignee": utils.user_id},
	{"issue__job__segment__task__owner": utils.user_id},
	{"issue__job__segment__task__assignee": utils.user_id},
	{"issue__job__segment__task__project__owner": utils.user_id},
	{"issue__job__segment__task__project__assignee": utils.user_id},
])

filter := utils.org_filter(visibility, ["issue__job__segment__task__organization"])
