package core_test

import (
	"testing"

	"github.com/metacircular/mcias/internal/pgtest"
)

// One PostgreSQL server for the tests that run several nodes on it.
func TestMain(m *testing.M) { pgtest.Main(m) }
