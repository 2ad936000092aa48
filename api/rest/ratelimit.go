package rest

import (
	"math"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/metacircular/mcias/api/frontend"
)

// limitPasswords rejects requests over the per-IP rate with 429 and
// Retry-After. The IP is what Gin's ClientIP reports, which honours
// X-Forwarded-For only from configured trusted proxies, so a client
// cannot pick its own bucket.
func limitPasswords(l *frontend.Limiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		ok, wait := l.Allow(c.ClientIP(), time.Now())
		if !ok {
			c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			row := frontend.RateLimitedRow
			abortJSON(c, row.HTTP, row.Code, row.Msg)
			return
		}
		c.Next()
	}
}
