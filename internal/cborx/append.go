package cborx

import (
	"encoding/binary"
	"math"
)

// Major types of RFC 8949.
const (
	MajorUint   byte = 0
	MajorNeg    byte = 1
	MajorBytes  byte = 2
	MajorText   byte = 3
	MajorArray  byte = 4
	MajorMap    byte = 5
	MajorTag    byte = 6
	MajorSimple byte = 7
)

// Simple values and float markers (additional information of major type 7).
const (
	SimpleFalse     byte = 20
	SimpleTrue      byte = 21
	SimpleNull      byte = 22
	SimpleUndefined byte = 23
	SimpleFloat16   byte = 25
	SimpleFloat32   byte = 26
	SimpleFloat64   byte = 27
)

// AppendHead appends the shortest head for major type m with argument n.
func AppendHead(b []byte, m byte, n uint64) []byte {
	m <<= 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= math.MaxUint8:
		return append(b, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, m|27), n)
	}
}

// AppendUint appends an unsigned integer.
func AppendUint(b []byte, v uint64) []byte { return AppendHead(b, MajorUint, v) }

// AppendInt appends a signed integer.
func AppendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return AppendHead(b, MajorUint, uint64(v))
	}
	return AppendHead(b, MajorNeg, uint64(-(v + 1)))
}

// AppendText appends a text string.
func AppendText(b []byte, s string) []byte {
	return append(AppendHead(b, MajorText, uint64(len(s))), s...)
}

// AppendBytes appends a byte string.
func AppendBytes(b []byte, p []byte) []byte {
	return append(AppendHead(b, MajorBytes, uint64(len(p))), p...)
}

// AppendArray appends the head of an array of n items.
func AppendArray(b []byte, n int) []byte { return AppendHead(b, MajorArray, uint64(n)) }

// AppendMap appends the head of a map of n pairs.
func AppendMap(b []byte, n int) []byte { return AppendHead(b, MajorMap, uint64(n)) }

// AppendTag appends a tag head.
func AppendTag(b []byte, tag uint64) []byte { return AppendHead(b, MajorTag, tag) }

// AppendNull appends null.
func AppendNull(b []byte) []byte { return append(b, MajorSimple<<5|SimpleNull) }

// AppendBool appends true or false.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, MajorSimple<<5|SimpleTrue)
	}
	return append(b, MajorSimple<<5|SimpleFalse)
}

// AppendFloat64 appends a double-precision float.
func AppendFloat64(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, MajorSimple<<5|SimpleFloat64), math.Float64bits(f))
}

// AppendFloat32 appends a single-precision float.
func AppendFloat32(b []byte, f float32) []byte {
	return binary.BigEndian.AppendUint32(append(b, MajorSimple<<5|SimpleFloat32), math.Float32bits(f))
}
