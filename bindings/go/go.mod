module github.com/wdpool/wdpool-go

go 1.26
