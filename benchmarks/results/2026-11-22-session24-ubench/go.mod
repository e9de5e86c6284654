module ubench
go 1.26
