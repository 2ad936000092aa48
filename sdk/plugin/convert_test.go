package plugin

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// fill sets every field of the struct v points to a distinct non-zero
// value, so a field the converters forget shows up as a difference.
func fill(t *testing.T, v any) {
	t.Helper()
	n := 0
	var set func(f reflect.Value)
	set = func(f reflect.Value) {
		n++
		switch f.Kind() {
		case reflect.String:
			f.SetString("s" + string(rune('a'+n%26)))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(1000 + n))
		case reflect.Slice:
			switch f.Type().Elem().Kind() {
			case reflect.Uint8:
				f.SetBytes([]byte{byte(n), 0, 255})
			case reflect.String:
				f.Set(reflect.ValueOf([]string{"admin", "ops"}).Convert(f.Type()))
			default:
				t.Fatalf("fill: no rule for %s", f.Type())
			}
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"k": "v", "quote\"": "line\nbreak"}))
		case reflect.Struct:
			if f.Type() == reflect.TypeOf(time.Time{}) {
				f.Set(reflect.ValueOf(time.Date(2026, 3, 4, 5, 6, 7, 123456789+n, time.UTC)))
				return
			}
			for i := range f.NumField() {
				set(f.Field(i))
			}
		default:
			t.Fatalf("fill: no rule for %s", f.Type())
		}
	}
	set(reflect.ValueOf(v).Elem())
}

// wire marshals and unmarshals m, as the gRPC transport does.
func wire[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func roundTrip[V any, M proto.Message](t *testing.T, name string, to func(V) M, from func(M) V) {
	t.Run("type="+name, func(t *testing.T) {
		var v V
		fill(t, &v)
		got := from(wire(t, to(v)))
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("round trip changed the value:\n got %+v\nwant %+v", got, v)
		}
		var zero V
		if got := from(wire(t, to(zero))); !reflect.DeepEqual(got, zero) {
			t.Fatalf("zero value came back as %+v", got)
		}
	})
}

// TestConvertRoundTrip holds every converter to carry every field, both
// ways, through the real protobuf encoding.
func TestConvertRoundTrip(t *testing.T) {
	roundTrip(t, "audit.Event", eventToPB, eventFromPB)
	roundTrip(t, "storage.Account", accountToPB, accountFromPB)
	roundTrip(t, "storage.AccountFilter", accountFilterToPB, accountFilterFromPB)
	roundTrip(t, "storage.UpdateOptions", updateOptionsToPB, updateOptionsFromPB)
	roundTrip(t, "storage.Token", tokenToPB, tokenFromPB)
	roundTrip(t, "storage.TokenFilter", tokenFilterToPB, tokenFilterFromPB)
	roundTrip(t, "storage.PGCreds", pgCredsToPB, pgCredsFromPB)
	roundTrip(t, "storage.EventFilter", eventFilterToPB, eventFilterFromPB)
	roundTrip(t, "custody.PublicKey", publicKeyToPB, publicKeyFromPB)
}

// TestTimesComeBackUTC: a time in another zone crosses as its instant.
func TestTimesComeBackUTC(t *testing.T) {
	zone := time.FixedZone("X", 5*3600)
	in := time.Date(2026, 1, 1, 12, 0, 0, 1, zone)
	got := timeFromPB(wire(t, timeToPB(in)))
	if !got.Equal(in) || got.Location() != time.UTC {
		t.Fatalf("got %v, want %v in UTC", got, in)
	}
}
