package pluginhost

import "context"

// call runs f on the supervised backend with a bounded context; it fails
// fast while the plugin is down.
func call[T, R any](s *supervisor[T], ctx context.Context, f func(context.Context, T) (R, error)) (R, error) {
	b, cctx, cancel, err := s.get(ctx)
	if err != nil {
		var zero R
		return zero, err
	}
	defer cancel()
	r, err := f(cctx, b)
	s.observe(err)
	return r, err
}

// call0 is call for methods that return only an error.
func call0[T any](s *supervisor[T], ctx context.Context, f func(context.Context, T) error) error {
	_, err := call(s, ctx, func(ctx context.Context, b T) (struct{}, error) { return struct{}{}, f(ctx, b) })
	return err
}
