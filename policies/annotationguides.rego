# Annotation guides: implements policies/tables/annotationguides.csv as read
# in policies/README.md.
#
# Relations: Target:owner and Target:assignee (resource.target.owner/assignee,
# the project or task the guide belongs to), Job:assignee
# (resource.job.assignee, as policies/README.md defines it for every table).
# No list scope, so no filter.
package annotationguides

import rego.v1

import data.utils

default allow := false

is_target_owner if utils.is_owner(input.resource.target)

is_target_assignee if utils.is_assignee(input.resource.target)

is_job_assignee if utils.is_assignee(input.resource.job)

# "Target:owner, Target:assignee"
is_target_staff if is_target_owner

is_target_staff if is_target_assignee

# Admins, in any context.
allow if {
	input.scope in {"view", "create", "update", "delete"}
	utils.in_any_context
	utils.is_admin
}

# Users who are maintainers or owners of the organization.
allow if {
	input.scope in {"view", "create", "update", "delete"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# view: the staff of the target and the assignees of its jobs
allow if {
	input.scope == "view"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_target_staff
}

allow if {
	input.scope == "view"
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_job_assignee
}

allow if {
	input.scope == "view"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_target_staff
}

allow if {
	input.scope == "view"
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_job_assignee
}

# create, update, delete: the staff of the target
allow if {
	input.scope in {"create", "update", "delete"}
	utils.in_sandbox
	utils.has_perm(utils.USER)
	is_target_staff
}

allow if {
	input.scope in {"create", "update", "delete"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.WORKER)
	is_target_staff
}
