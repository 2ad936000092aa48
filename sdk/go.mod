module github.com/metacircular/mcias/sdk

go 1.26
