package grpc

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/metacircular/mcias/api/frontend"
)

// errorDomain is the ErrorInfo domain of every MCIAS error.
const errorDomain = "mcias"

// newStatus builds the status of a row: its gRPC code, the sentence, and
// an ErrorInfo carrying the contract code, plus any extra details.
func newStatus(row frontend.ErrorRow, msg string, extra ...protoadapt.MessageV1) *status.Status {
	st := status.New(row.GRPC, msg)
	details := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: row.Code, Domain: errorDomain}}, extra...)
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st // details are a convenience; the code and sentence stand
	}
	return withDetails
}

// toStatusError turns any error a handler or interceptor returned into a
// gRPC status error. Errors that already are statuses pass unchanged;
// the rest go through the shared table. serverFault reports a 5xx-class
// error, whose text is logged (it is never sent).
func toStatusError(err error) (out error, serverFault bool) {
	if err == nil {
		return nil, false
	}
	if _, ok := status.FromError(err); ok {
		return err, false
	}
	row, msg := frontend.Classify(err)
	return newStatus(row, msg).Err(), row.HTTP >= 500
}

// rateLimited is the status of a call over the per-IP password limit.
func rateLimited(retryAfter time.Duration) error {
	return newStatus(frontend.RateLimitedRow, frontend.RateLimitedRow.Msg,
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}).Err()
}

// invalidArg is a 400-equivalent with a client-safe sentence.
func invalidArg(msg string) error {
	return newStatus(frontend.BadRequestRow, msg).Err()
}
