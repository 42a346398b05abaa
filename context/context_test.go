package context

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestFromValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      any
		wantErr string
	}{
		{name: "map", in: map[string]any{"url": "http://x"}},
		{name: "context", in: Context{"url": "http://x"}},
		{name: "nil", in: nil, wantErr: "context: argument is <nil>, not a dict"},
		{name: "list", in: []any{"a"}, wantErr: "context: argument is []interface {}, not a dict"},
		{name: "string", in: `{"url": "x"}`, wantErr: "context: argument is string, not a dict"},
		{name: "nil map", in: map[string]any(nil), wantErr: "context: argument is a nil dict"},
		{name: "other map", in: map[string]string{"url": "x"}, wantErr: "context: argument is map[string]string, not a dict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := FromValue(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("FromValue(%#v) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromValue(%#v): %v", tt.in, err)
			}
			if got, _ := c.URL(); got != "http://x" {
				t.Errorf("URL() = %q, want %q", got, "http://x")
			}
		})
	}
}

func TestFromValueDecodedJSON(t *testing.T) {
	t.Parallel()
	var v any
	if err := json.Unmarshal([]byte(`{"folder_out": "/out/x", "segtime": 4, "bitrate": 800.0}`), &v); err != nil {
		t.Fatal(err)
	}
	c, err := FromValue(v)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Segtime(); err != nil || n != 4 {
		t.Errorf("Segtime() = %d, %v; want 4, nil", n, err)
	}
	if n, err := c.Bitrate(); err != nil || n != 800 {
		t.Errorf("Bitrate() = %d, %v; want 800, nil", n, err)
	}
}

func TestClone(t *testing.T) {
	t.Parallel()
	orig := Context{
		"url":  "http://x",
		"meta": map[string]any{"a": []any{1, map[string]any{"b": 2}}},
	}
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone() = %#v, want %#v", c, orig)
	}
	c["url"] = "changed"
	c["meta"].(map[string]any)["a"].([]any)[1].(map[string]any)["b"] = 3
	if orig["url"] != "http://x" {
		t.Errorf("changing the clone changed the original's url")
	}
	if got := orig["meta"].(map[string]any)["a"].([]any)[1].(map[string]any)["b"]; got != 2 {
		t.Errorf("changing the clone's nested value changed the original: %v", got)
	}
	if Context(nil).Clone() != nil {
		t.Errorf("nil.Clone() is not nil")
	}
}

func TestInt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		value   any
		want    int
		wantErr string
		missing bool
	}{
		{name: "int", value: 4, want: 4},
		{name: "int64", value: int64(4), want: 4},
		{name: "int32", value: int32(-4), want: -4},
		{name: "uint8", value: uint8(4), want: 4},
		{name: "uint64", value: uint64(4), want: 4},
		{name: "integral float64", value: 4.0, want: 4},
		{name: "float32", value: float32(4), want: 4},
		{name: "json.Number int", value: json.Number("4"), want: 4},
		{name: "json.Number float", value: json.Number("4.0"), want: 4},
		{name: "missing", value: nil, missing: true, wantErr: `context: missing key "segtime"`},
		{name: "fractional float", value: 4.5, wantErr: `context: key "segtime": want an integer, got float64 4.5`},
		{name: "huge float", value: 1e300, wantErr: `want an integer, got float64`},
		{name: "NaN", value: math.NaN(), wantErr: `want an integer, got float64`},
		{name: "uint64 overflow", value: uint64(math.MaxUint64), wantErr: `want an integer, got uint64`},
		{name: "json.Number fraction", value: json.Number("4.5"), wantErr: `want an integer, got json.Number "4.5"`},
		{name: "string", value: "4", wantErr: `context: key "segtime": want an integer, got string "4"`},
		{name: "bool", value: true, wantErr: `want an integer, got bool true`},
		{name: "list", value: []any{4}, wantErr: `context: key "segtime": want an integer, got []interface {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Context{}
			if tt.value != nil {
				c[KeySegtime] = tt.value
			}
			got, err := c.Int(KeySegtime)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Int() = %d, %v; want %d, nil", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Int() error = %v, want it to contain %q", err, tt.wantErr)
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != KeySegtime {
				t.Errorf("Int() error %v is not a *KeyError for %q", err, KeySegtime)
			}
			if errors.Is(err, ErrMissingKey) != tt.missing {
				t.Errorf("errors.Is(%v, ErrMissingKey) = %t, want %t", err, !tt.missing, tt.missing)
			}
		})
	}
}

func TestNullIsMissing(t *testing.T) {
	t.Parallel()
	c := Context{KeyBitrate: nil, KeyURL: nil}
	if _, err := c.Bitrate(); !errors.Is(err, ErrMissingKey) {
		t.Errorf("Bitrate() with null: %v, want ErrMissingKey", err)
	}
	if _, err := c.URL(); !errors.Is(err, ErrMissingKey) {
		t.Errorf("URL() with null: %v, want ErrMissingKey", err)
	}
}

func TestTypedAccessors(t *testing.T) {
	t.Parallel()
	c := Context{
		KeyURL: "http://example.com/a.mp4", KeyFolderOut: "/out/abc", KeyID: "abc",
		KeyOriginalFile: "/out/abc/source/a.mp4",
		KeyTrackWidth:   int64(1920), KeyTrackHeight: float64(1080),
		KeyTargetWidth: json.Number("640"), KeyTargetHeight: 360,
		KeyBitrate: int64(800), KeySegtime: int64(4),
	}
	strs := []struct {
		name string
		get  func() (string, error)
		want string
	}{
		{"URL", c.URL, "http://example.com/a.mp4"},
		{"FolderOut", c.FolderOut, "/out/abc"},
		{"ID", c.ID, "abc"},
		{"OriginalFile", c.OriginalFile, "/out/abc/source/a.mp4"},
	}
	for _, s := range strs {
		if got, err := s.get(); err != nil || got != s.want {
			t.Errorf("%s() = %q, %v; want %q", s.name, got, err, s.want)
		}
	}
	if w, h, err := c.TrackSize(); err != nil || w != 1920 || h != 1080 {
		t.Errorf("TrackSize() = %d, %d, %v", w, h, err)
	}
	if w, h, err := c.TargetSize(); err != nil || w != 640 || h != 360 {
		t.Errorf("TargetSize() = %d, %d, %v", w, h, err)
	}
	if n, err := c.Bitrate(); err != nil || n != 800 {
		t.Errorf("Bitrate() = %d, %v", n, err)
	}
	if n, err := c.Segtime(); err != nil || n != 4 {
		t.Errorf("Segtime() = %d, %v", n, err)
	}
}

func TestTypedAccessorErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctx     Context
		get     func(Context) error
		wantErr string
	}{
		{"empty url", Context{KeyURL: ""}, func(c Context) error { _, err := c.URL(); return err },
			`context: key "url": want a non-empty string, got string ""`},
		{"numeric folder_out", Context{KeyFolderOut: 3.0}, func(c Context) error { _, err := c.FolderOut(); return err },
			`context: key "folder_out": want a string, got float64 3`},
		{"zero bitrate", Context{KeyBitrate: 0}, func(c Context) error { _, err := c.Bitrate(); return err },
			`context: key "bitrate": want a positive integer, got int 0`},
		{"negative segtime", Context{KeySegtime: int64(-4)}, func(c Context) error { _, err := c.Segtime(); return err },
			`context: key "segtime": want a positive integer, got int64 -4`},
		{"missing track height", Context{KeyTrackWidth: 1920}, func(c Context) error { _, _, err := c.TrackSize(); return err },
			`context: missing key "track_height"`},
		{"missing target width", Context{KeyTargetHeight: 360}, func(c Context) error { _, _, err := c.TargetSize(); return err },
			`context: missing key "target_width"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.get(tt.ctx)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
