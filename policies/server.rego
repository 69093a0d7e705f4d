# Server: implements policies/tables/server.csv as read in policies/README.md.
# Every row has Context N/A and no resource.
package server

import rego.v1

import data.utils

default allow := false

# view: everyone
allow if {
	input.scope == "view"
	utils.in_any_context
}

# list:content (the shared storage): users and above
allow if {
	input.scope == "list:content"
	utils.in_any_context
	utils.has_perm(utils.USER)
}
