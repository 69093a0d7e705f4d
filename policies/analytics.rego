# Analytics: implements policies/tables/analytics.csv as read in
# policies/README.md: viewing needs `input.auth.user.has_analytics_access`
# to be true (the HasAnalyticsAccess column), whatever the privilege, role
# and context.
package analytics

import rego.v1

import data.utils

default allow := false

allow if {
	input.scope == "view"
	utils.in_any_context
	input.auth.user.has_analytics_access == true
}
