package rest

import (
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/metacircular/mcias/api/frontend"
)

// limitPasswords rejects requests over the per-IP rate with 429 and
// Retry-After. The IP is what Gin's ClientIP reports, which honours
// X-Forwarded-For only from configured trusted proxies, so a client
// cannot pick its own bucket. When the shared limiter cannot answer the
// request is refused with 503, never let through.
func limitPasswords(l *frontend.Limiter, logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		ok, wait, err := l.Allow(c.Request.Context(), c.ClientIP(), time.Now())
		if err != nil {
			logger.Warn("login limiter unavailable; attempt refused", "err", err)
			row := frontend.LimiterUnavailableRow
			abortJSON(c, row.HTTP, row.Code, row.Msg)
			return
		}
		if !ok {
			c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			row := frontend.RateLimitedRow
			abortJSON(c, row.HTTP, row.Code, row.Msg)
			return
		}
		c.Next()
	}
}
