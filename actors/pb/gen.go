// Package pb holds the protobuf messages of the grains (see actors.proto).
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative actors.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative budget.proto
