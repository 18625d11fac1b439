module github.com/superd/superd

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/hashicorp/go-syslog v1.0.1
	golang.org/x/sys v0.49.0
	golang.org/x/time v0.16.0
)
