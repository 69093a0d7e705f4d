# Helpers shared by the default policy set (reached as `import data.utils`,
# then `utils.X`). They implement the reading of the decision tables given in
# policies/README.md: the request context, the global privilege and the
# organization role priorities, the relations of the Ownership column, and
# the building blocks of the list filters (contract's prefix format).
package utils

import rego.v1

# Global privileges (`input.auth.user.privilege`); `null` is NONE.
ADMIN := "admin"

USER := "user"

WORKER := "worker"

NONE := "none"

# Organization roles (`input.auth.organization.user.role`); `null` is not a
# member. WORKER above is also the name of the lowest member role.
OWNER := "owner"

MAINTAINER := "maintainer"

SUPERVISOR := "supervisor"

# The lower the number, the more the privilege allows.
PRIVILEGES := {
	ADMIN: 0,
	USER: 1,
	WORKER: 2,
	NONE: 3,
}

ORG_ROLES := {
	OWNER: 0,
	MAINTAINER: 1,
	SUPERVISOR: 2,
	WORKER: 3,
}

# Priority of a caller who is not a member of the organization.
NOT_A_MEMBER := 4

# ---------------------------------------------------------------------------
# Privilege

# The caller's privilege priority: null, missing or unknown privileges count
# as NONE.
privilege_priority := priority if {
	priority := PRIVILEGES[input.auth.user.privilege]
} else := PRIVILEGES[NONE]

# The caller has privilege `privilege` or a higher one.
has_perm(privilege) if privilege_priority <= PRIVILEGES[privilege]

# The caller's privilege is exactly `privilege` (Strict_Privilege = True).
is_privilege(privilege) if privilege_priority == PRIVILEGES[privilege]

is_admin if has_perm(ADMIN)

# ---------------------------------------------------------------------------
# Context

# Organization context: the request carries an organization.
is_organization if input.auth.organization != null

# Sandbox context (the personal workspace): no organization.
is_sandbox if not is_organization

# Sandbox context, reached by naming an organization explicitly: resources
# that carry an organization must have none.
is_sandbox_with_organization if {
	is_sandbox
	input.auth.organization_specified == true
}

# The resource (when there is one) carries a non-null organization.
# Only tasks carry one through their project as well.
carries_organization(resource) if resource.organization != null

carries_organization(resource) if resource.project.organization != null

# The extra condition of the sandbox with an organization specified, true in
# every other case: it holds for every row, whatever its Context.
sandbox_organization_ok if not is_sandbox_with_organization

sandbox_organization_ok if {
	is_sandbox_with_organization
	not carries_organization(input.resource)
}

# The resource lies in the request's organization; a null (or absent)
# resource, as for list and plain create scopes, passes.
resource_in_organization if not has_resource

resource_in_organization if {
	has_resource
	input.resource.organization.id == input.auth.organization.id
}

has_resource if input.resource != null

# Row context Sandbox.
in_sandbox if {
	is_sandbox
	sandbox_organization_ok
}

# Row context Organization, for packages whose resource has an organization.
in_organization if {
	is_organization
	resource_in_organization
}

# Row context N/A.
in_any_context if sandbox_organization_ok

# ---------------------------------------------------------------------------
# Organization role (the Membership column), only in an organization

org_role_priority := priority if {
	is_organization
	priority := ORG_ROLES[input.auth.organization.user.role]
} else := NOT_A_MEMBER

# The caller's role in the request's organization is `role` or a higher one.
has_org_role(role) if {
	is_organization
	org_role_priority <= ORG_ROLES[role]
}

is_org_member if has_org_role(WORKER)

# Owner or maintainer of the request's organization.
is_org_staff if has_org_role(MAINTAINER)

# ---------------------------------------------------------------------------
# Relations of the Ownership column, for a resource or one of its parents
# (`utils.is_owner(input.resource.project)` is Project:owner).

user_id := input.auth.user.id

is_owner(resource) if resource.owner.id == user_id

is_assignee(resource) if resource.assignee.id == user_id

# ---------------------------------------------------------------------------
# Filters (list scopes), in the contract's prefix format

# Matches no row.
NOTHING := ["~", {}]

# Matches every row.
EVERYTHING := {}

# OR of the given filters.
any_of(filters) := array.concat(["|"], filters)

# `["&", visibility, <organization part>, "org_filter_proof"]`: the
# organization part is left out in a plain sandbox (and for packages without
# organization fields), restricts every organization field to null in the
# sandbox with an organization specified, and matches the request's
# organization through any of the fields in an organization.
org_filter(visibility, org_fields) := ["&", visibility, "org_filter_proof"] if {
	count(org_fields) == 0
} else := ["&", visibility, "org_filter_proof"] if {
	is_sandbox
	not is_sandbox_with_organization
} else := ["&", visibility, array.concat(["&"], nulls), "org_filter_proof"] if {
	is_sandbox_with_organization
	nulls := [{field: null} | some field in org_fields]
} else := ["&", visibility, any_of(matches), "org_filter_proof"] if {
	is_organization
	org_id := input.auth.organization.id
	matches := [{field: org_id} | some field in org_fields]
}
