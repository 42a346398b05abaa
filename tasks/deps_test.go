package tasks

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseRenditions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []Rendition
		wantErr bool
	}{
		{in: "360:800,720:2500", want: []Rendition{{360, 800}, {720, 2500}}},
		{in: " 180:300 , 360:800 ,", want: []Rendition{{180, 300}, {360, 800}}},
		{in: "720:2500,360:800", want: []Rendition{{720, 2500}, {360, 800}}},
		{in: "", wantErr: true},
		{in: "360", wantErr: true},
		{in: "360:", wantErr: true},
		{in: "361:800", wantErr: true}, // odd height
		{in: "0:800", wantErr: true},
		{in: "-360:800", wantErr: true},
		{in: "360:0", wantErr: true},
		{in: "360:abc", wantErr: true},
		{in: "360:800,360:900", wantErr: true}, // duplicate height
		{in: "10000:800", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRenditions(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadRenditions) {
				t.Errorf("ParseRenditions(%q) = %v, %v; want an ErrBadRenditions", tt.in, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseRenditions(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDefaultRenditionsParseBack(t *testing.T) {
	t.Parallel()
	var s string
	for i, r := range DefaultRenditions() {
		if i > 0 {
			s += ","
		}
		s += r.String()
	}
	got, err := ParseRenditions(s)
	if err != nil || !reflect.DeepEqual(got, DefaultRenditions()) {
		t.Fatalf("ParseRenditions(%q) = %v, %v", s, got, err)
	}
}

func TestNewPanicsWithoutAbsoluteOutputDir(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"", "relative/out"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(OutputDir %q) did not panic", dir)
				}
			}()
			New(Deps{OutputDir: dir})
		}()
	}
}
