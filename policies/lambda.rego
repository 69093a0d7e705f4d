# Lambda functions: implements policies/tables/lambda.csv as read in
# policies/README.md. Every row has Context N/A and no relation.
package lambda

import rego.v1

import data.utils

default allow := false

# list, view: everyone
allow if {
	input.scope in {"list", "view"}
	utils.in_any_context
}

# call:online: workers and above
allow if {
	input.scope == "call:online"
	utils.in_any_context
	utils.has_perm(utils.WORKER)
}
