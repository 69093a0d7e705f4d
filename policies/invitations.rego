# Invitations: implements policies/tables/invitations.csv as read in
# policies/README.md.
#
# Relations: Owner (resource.owner, who sent the invitation), Invitee
# (resource.invitee). Limit: resource.role, the role offered.
#
# filter: Owner is `owner`, Invitee is `membership__user`; the organization
# field is `membership__organization`.
# The `view` row for Owner and Invitee has Context N/A: in an organization it
# also allows the caller's own invitations of other organizations (or of
# none), so there the organization part admits them too.
package invitations

import rego.v1

import data.utils

default allow := false

is_owner if utils.is_owner(input.resource)

is_invitee if input.resource.invitee.id == utils.user_id

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

# create: maintainers may invite up to supervisors, owners up to maintainers
allow if {
	input.scope == "create"
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
	role := input.resource.role
	not role in {utils.MAINTAINER, utils.OWNER}
}

allow if {
	input.scope == "create"
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.OWNER)
	input.resource.role != utils.OWNER
}

# Admins in the sandbox, and users who are maintainers or owners of the
# organization.
allow if {
	input.scope in {"view", "resend", "delete"}
	utils.in_sandbox
	utils.is_admin
}

allow if {
	input.scope in {"view", "resend", "delete"}
	utils.in_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
}

# view: the sender and the invitee, in any context
allow if {
	input.scope == "view"
	utils.in_any_context
	is_owner
}

allow if {
	input.scope == "view"
	utils.in_any_context
	is_invitee
}

# resend, delete: the sender, in any context
allow if {
	input.scope in {"resend", "delete"}
	utils.in_any_context
	utils.has_perm(utils.WORKER)
	is_owner
}

# accept: the invitee, and admins
allow if {
	input.scope == "accept"
	utils.in_any_context
	utils.is_admin
}

allow if {
	input.scope == "accept"
	utils.in_any_context
	is_invitee
}

# The invitations the caller may view (scope `view`).
visibility := utils.EVERYTHING if {
	utils.is_sandbox
	utils.is_admin
} else := utils.EVERYTHING if {
	utils.is_organization
	utils.has_perm(utils.USER)
	utils.has_org_role(utils.MAINTAINER)
} else := utils.any_of([
	{"owner": utils.user_id},
	{"membership__user": utils.user_id},
])

mine := [{"owner": utils.user_id}, {"membership__user": utils.user_id}]

filter := ["&", visibility, org_part, "org_filter_proof"] if {
	utils.is_organization
	org_part := utils.any_of(array.concat([{"membership__organization": input.auth.organization.id}], mine))
} else := utils.org_filter(visibility, ["membership__organization"])
