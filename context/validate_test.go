package context

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	const root = "/srv/vhg/out"
	tests := []struct {
		name      string
		root      string // root when not empty
		folderOut any    // omitted when nil
		id        any    // omitted when nil
		wantErr   bool
	}{
		{name: "uuid folder and id", folderOut: "/srv/vhg/out/0f8fad5bd9cb469fa16570867728950e", id: "0f8fad5bd9cb469fa16570867728950e"},
		{name: "no id", folderOut: "/srv/vhg/out/job-1"},
		{name: "nested folder", folderOut: "/srv/vhg/out/2024/job-1"},
		{name: "trailing slash on root", root: "/srv/vhg/out/", folderOut: "/srv/vhg/out/job"},
		{name: "dot dot that stays inside", folderOut: "/srv/vhg/out/a/../job"},
		{name: "root is slash", root: "/", folderOut: "/job"},
		// No shell runs and ffmpeg gets file: URLs, so these are inert names.
		{name: "shell metacharacters in folder", folderOut: "/srv/vhg/out/a;rm -rf ~ $(id) `id` |x&"},
		{name: "colon and leading dash in folder", folderOut: "/srv/vhg/out/-i http:x"},

		{name: "missing folder_out", wantErr: true},
		{name: "empty folder_out", folderOut: "", wantErr: true},
		{name: "numeric folder_out", folderOut: 42, wantErr: true},
		{name: "relative folder_out", folderOut: "srv/vhg/out/job", wantErr: true},
		{name: "relative escape", folderOut: "../../etc", wantErr: true},
		{name: "dot dot escape", folderOut: "/srv/vhg/out/../../../etc", wantErr: true},
		{name: "dot dot to sibling", folderOut: "/srv/vhg/out/../out2/job", wantErr: true},
		{name: "absolute elsewhere", folderOut: "/etc", wantErr: true},
		{name: "prefix but not inside", folderOut: "/srv/vhg/out2/job", wantErr: true},
		{name: "the root itself", folderOut: "/srv/vhg/out", wantErr: true},
		{name: "the root with slash", folderOut: "/srv/vhg/out/", wantErr: true},
		{name: "the root with dot", folderOut: "/srv/vhg/out/.", wantErr: true},
		{name: "newline", folderOut: "/srv/vhg/out/a\n#EXT-X-ENDLIST", wantErr: true},
		{name: "NUL byte", folderOut: "/srv/vhg/out/a\x00/etc", wantErr: true},
		{name: "percent pattern", folderOut: "/srv/vhg/out/a%d", wantErr: true},
		{name: "relative root", root: "out", folderOut: "out/job", wantErr: true},

		{name: "id with shell metacharacters", folderOut: "/srv/vhg/out/job", id: "abc;rm -rf /", wantErr: true},
		{name: "id with command substitution", folderOut: "/srv/vhg/out/job", id: "$(reboot)", wantErr: true},
		{name: "id with path", folderOut: "/srv/vhg/out/job", id: "../../etc", wantErr: true},
		{name: "id with slash", folderOut: "/srv/vhg/out/job", id: "a/b", wantErr: true},
		{name: "empty id", folderOut: "/srv/vhg/out/job", id: "", wantErr: true},
		{name: "id too long", folderOut: "/srv/vhg/out/job", id: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", wantErr: true},
		{name: "id with newline", folderOut: "/srv/vhg/out/job", id: "abc\n", wantErr: true},
		{name: "numeric id", folderOut: "/srv/vhg/out/job", id: 7, wantErr: true},
		{name: "id of 64", folderOut: "/srv/vhg/out/job", id: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Context{}
			if tt.folderOut != nil {
				c[KeyFolderOut] = tt.folderOut
			}
			if tt.id != nil {
				c[KeyID] = tt.id
			}
			r := root
			if tt.root != "" {
				r = tt.root
			}
			err := c.Validate(r)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Validate(%q) with %#v: %v", r, c, err)
				}
				return
			}
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Validate(%q) with %#v = %v, want an error wrapping ErrUnsafePath", r, c, err)
			}
			t.Logf("%v", err)
		})
	}
}

func TestValidateEmptyRoot(t *testing.T) {
	t.Parallel()
	err := Context{KeyFolderOut: "/job"}.Validate("")
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("Validate(\"\") = %v, want ErrUnsafePath", err)
	}
}
