// Package model is the first of two packages named model in tether gen's
// imports case.
package model

// Item is data from package a/model.
type Item struct{ ID int }
