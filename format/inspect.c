/*
 * format/inspect.c — the segment report of inspect.h. Reads through the
 * public reader API only, so it shows what any reader would see.
 */
#include "format/inspect.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/segment.h"

void st_value_format(const struct st_value *v, char *buf, size_t len)
{
	if (v->is_null) {
		snprintf(buf, len, "NULL");
		return;
	}
	switch (v->type) {
	case ST_TYPE_BOOL:
		snprintf(buf, len, "%s", v->v.b ? "true" : "false");
		break;
	case ST_TYPE_INT32:
		snprintf(buf, len, "%" PRId32, v->v.i32);
		break;
	case ST_TYPE_INT64:
		snprintf(buf, len, "%" PRId64, v->v.i64);
		break;
	case ST_TYPE_FLOAT64:
		/* The shortest form that reads back as the same double. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, v->v.f64);
			if (strtod(buf, NULL) == v->v.f64)
				break;
		}
		break;
	case ST_TYPE_DATE:
	case ST_TYPE_TIMESTAMP: {
		int64_t us = v->type == ST_TYPE_DATE ? (int64_t)v->v.i32 * 86400000000LL : v->v.i64;
		int64_t secs = us / 1000000, frac = us % 1000000;
		if (frac < 0) {
			frac += 1000000;
			secs--;
		}
		time_t t = (time_t)secs;
		struct tm tm;
		if (!gmtime_r(&t, &tm)) {
			snprintf(buf, len, "%" PRId64, us);
		} else if (v->type == ST_TYPE_DATE) {
			snprintf(buf, len, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
				 tm.tm_mday);
		} else {
			snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d.%06" PRId64,
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				 tm.tm_min, tm.tm_sec, frac);
		}
		break;
	}
	default: {
		size_t o = 0;
		if (len < 4) {
			if (len)
				buf[0] = '\0';
			break;
		}
		buf[o++] = '\'';
		for (uint32_t i = 0; i < v->v.s.len && o + 6 < len; i++) {
			uint8_t c = v->v.s.ptr[i];
			if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
				buf[o++] = (char)c;
			else
				o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
		}
		buf[o++] = '\'';
		buf[o] = '\0';
	}
	}
}

static void stats_line(FILE *out, const struct st_col_stats *st)
{
	char lo[96], hi[96];
	fprintf(out, "nulls %" PRIu64, st->null_count);
	if (st->has_minmax) {
		st_value_format(&st->min, lo, sizeof lo);
		st_value_format(&st->max, hi, sizeof hi);
		fprintf(out, "  min %s%s  max %s%s", lo, st->min_exact ? "" : " (prefix)", hi,
			st->max_exact ? "" : " (bound)");
	} else {
		fprintf(out, "  min/max none");
	}
	if (st->dict_size)
		fprintf(out, "  dict %u", st->dict_size);
}

int seg_inspect(const char *path, FILE *out, bool chunks, struct st_err *err)
{
	struct seg_reader *r = NULL;
	int rc = seg_reader_open(path, NULL, &r, err);
	if (rc != ST_OK)
		return rc; /* nothing to report on: the caller prints err */
	const struct st_schema *s = seg_reader_schema(r);
	uint32_t G = seg_reader_row_groups(r);
	uint64_t rows = seg_reader_rows(r);
	fprintf(out, "segment %s\n  format %d.%u, %" PRIu64 " bytes, %" PRIu64
		" rows, %u row groups, %.3f bytes/row\n",
		path, SEG_MAJOR, seg_reader_minor(r), seg_reader_size(r), rows, G,
		rows ? (double)seg_reader_size(r) / (double)rows : 0.0);
	fprintf(out, "schema:\n");
	for (uint32_t i = 0; i < s->nfields; i++)
		fprintf(out, "  %-3u %-24s %-10s %s  (field id %u)\n", i, s->fields[i].name,
			st_type_name(s->fields[i].type),
			s->fields[i].nullable ? "NULL    " : "NOT NULL", s->fields[i].id);
	fprintf(out, "columns:\n");
	for (uint32_t i = 0; i < s->nfields; i++) {
		uint64_t stored = 0, encoded = 0;
		uint32_t per_enc[8] = {0}, lz4 = 0;
		for (uint32_t g = 0; g < G; g++) {
			const struct seg_chunk_meta *cm = &seg_reader_row_group(r, g)->chunks[i];
			stored += cm->stored_size;
			encoded += cm->encoded_size;
			per_enc[cm->encoding & 7]++;
			lz4 += cm->compression != 0;
		}
		fprintf(out, "  %-24s %12" PRIu64 " bytes  %7.3f bytes/row  encodings",
			s->fields[i].name, stored, rows ? (double)stored / (double)rows : 0.0);
		for (int e = 0; e < 8; e++)
			if (per_enc[e])
				fprintf(out, " %s×%u", seg_encoding_name(e), per_enc[e]);
		fprintf(out, "  lz4×%u\n    ", lz4);
		stats_line(out, &seg_reader_file_stats(r)[i]);
		fprintf(out, "\n");
	}
	if (chunks) {
		fprintf(out, "row groups:\n");
		for (uint32_t g = 0; g < G; g++) {
			const struct seg_rg_meta *rg = seg_reader_row_group(r, g);
			fprintf(out, "  rg %u: rows %" PRIu64 "..%" PRIu64 " (%u)\n", g,
				rg->first_row, rg->first_row + rg->rows - 1, rg->rows);
			for (uint32_t i = 0; i < s->nfields; i++) {
				const struct seg_chunk_meta *cm = &rg->chunks[i];
				fprintf(out, "    %-16s %-7s %-4s @%-10" PRIu64 " stored %-9u encoded %-9u crc %08x  ",
					s->fields[i].name, seg_encoding_name(cm->encoding),
					seg_compression_name(cm->compression), cm->offset,
					cm->stored_size, cm->encoded_size, cm->crc);
				stats_line(out, &cm->stats);
				fprintf(out, "\n");
			}
		}
	}
	for (uint32_t k = 0; k < seg_reader_kv_count(r); k++) {
		const uint8_t *key, *val;
		uint32_t kl, vl;
		seg_reader_kv(r, k, &key, &kl, &val, &vl);
		fprintf(out, "kv %.*s = %.*s\n", (int)kl, (const char *)key, (int)vl,
			(const char *)val);
	}
	rc = seg_reader_verify(r, err);
	if (rc == ST_OK)
		fprintf(out, "verify: ok (%u row groups, %u chunks: every CRC and encoding checked)\n",
			G, G * s->nfields);
	else
		fprintf(out, "verify: FAILED: %s\n", err ? err->msg : st_strerror(rc));
	seg_reader_close(r);
	return rc;
}
