module github.com/metacircular/mcias/examples/webhook-receiver

go 1.26.0

require github.com/metacircular/mcias/sdk v0.0.0

replace github.com/metacircular/mcias/sdk => ../../sdk
