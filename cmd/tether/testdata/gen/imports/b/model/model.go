// Package model is the second of two packages named model in tether gen's
// imports case.
package model

// Item is data from package b/model.
type Item struct{ Name string }
