#!/bin/bash
URL=$(cat /tmp/qh/url)
psql "$URL" -Atc "select c.relname, i.relname, pg_get_indexdef(x.indexrelid), coalesce(k.conname,'-'), coalesce(k.contype::text,'-'), coalesce(pg_get_constraintdef(k.oid),'-') from pg_index x join pg_class i on i.oid=x.indexrelid join pg_class c on c.oid=x.indrelid left join pg_constraint k on k.conindid=x.indexrelid and k.conrelid=x.indrelid where c.relname like 'view_%' order by 1,2"
psql "$URL" -Atc "select relname, relacl, obj_description(oid,'pg_class') from pg_class where relname like 'view_%' and relkind='r' order by 1"
