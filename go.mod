module github.com/vhg/vhg-worker

go 1.26.8

require (
	github.com/gomodule/redigo v1.9.3
	github.com/rabbitmq/amqp091-go v1.16.0
	github.com/sirupsen/logrus v1.10.2
)

require golang.org/x/sys v0.13.0 // indirect
