# Cloud storages: implements policies/tables/cloudstorages.csv as read in
# policies/README.md.
#
# Relations: Owner (resource.owner).
# filter: the only relation of `view` has a filter field (owner); the
# organization field is `organization`.
package cloudstorages

import rego.v1

import data.utils

default allow := false

STORAGE_SCOPES := {"view", "list:content", "update", "delete"}

is_owner if utils.is_owner(input.resource)

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

# create
allow if {
	input.scope == "create"
	utils.in_sandbox
	utils.has_perm(utils.USER)
}

allow if {
	input.scope == "create"
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# Every scope on an existing storage: admins in the sandbox.
allow if {
	input.scope in STORAGE_SCOPES
	utils.in_sandbox
	utils.is_admin
}

# view, list:content: the owner, and supervisors of the organization and above
allow if {
	input.scope in {"view", "list:content"}
	utils.in_sandbox
	is_owner
}

allow if {
	input.scope in {"view", "list:content"}
	utils.in_organization
	utils.has_org_role(utils.WORKER)
	is_owner
}

allow if {
	input.scope in {"view", "list:content"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.SUPERVISOR)
}

# update, delete: the owner, and maintainers of the organization and above
allow if {
	input.scope in {"update", "delete"}
	utils.in_sandbox
	utils.has_perm(utils.WORKER)
	is_owner
}

allow if {
	input.scope in {"update", "delete"}
	utils.in_organization
	utils.has_perm(utils.WORKER)
	utils.has_org_role(utils.WORKER)
	is_owner
}

allow if {
	input.scope in {"update", "delete"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# The storages the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_sandbox
	utils.is_admin
} else := utils.EVERYTHING if {
	utils.is_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.SUPERVISOR)
} else := utils.NOTHING if {
	utils.is_organization
	not utils.is_org_member
} else := utils.any_of([{"owner": utils.user_id}])

filter := utils.org_filter(visibility, ["organization"])
