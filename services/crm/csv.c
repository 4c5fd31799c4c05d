/*
 * csv.c - RFC 4180 records in and out.
 *
 * Reading: cells separated by commas, records by LF or CRLF; a quoted cell
 * may hold commas, line breaks and doubled quotes. Bounded: at most
 * CRM_CSV_MAX_FIELDS cells of CRM_CSV_MAX_CELL bytes. Writing quotes a
 * cell holding a comma, quote or line break, and defuses spreadsheet
 * formulas (a cell starting with = + - @ or a tab gets a leading ').
 */
#include "crm.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"

#include "common/banned.h"

void
crm_csv_init(struct crm_csv *c, const char *data, size_t len)
{
	c->data = data;
	c->len = len;
	c->pos = 0;
	c->line = 1;
	/* a UTF-8 byte order mark is not part of the first header */
	if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
		c->pos = 3;
}

void
crm_csv_row_release(struct crm_csv_row *row)
{
	int i;

	for (i = 0; i < row->n; i++)
		free(row->cell[i]);
	row->n = 0;
}

static int
add_cell(struct crm_csv_row *row, struct cm_buf *cell, int line,
	 char errbuf[CM_ERRBUF_LEN])
{
	if (cm_buf_error(cell)) {
		cm_errf(errbuf, "line %d: a cell is over %d bytes", line,
			CRM_CSV_MAX_CELL);
		return CM_E2BIG;
	}
	if (row->n >= CRM_CSV_MAX_FIELDS) {
		cm_errf(errbuf, "line %d: more than %d cells", line,
			CRM_CSV_MAX_FIELDS);
		return CM_E2BIG;
	}
	row->cell[row->n++] = cm_xstrdup(cm_buf_str(cell));
	cm_buf_reset(cell);
	return 0;
}

/* A quoted cell from just after its opening quote; pos ends after the
   closing quote. */
static int
quoted(struct crm_csv *c, struct cm_buf *cell, int start,
       char errbuf[CM_ERRBUF_LEN])
{
	char ch;

	while (c->pos < c->len) {
		ch = c->data[c->pos++];
		if (ch == '"') {
			if (c->pos < c->len && c->data[c->pos] == '"') {
				cm_buf_putc(cell, '"');
				c->pos++;
				continue;
			}
			return 0;
		}
		if (ch == '\n')
			c->line++;
		cm_buf_putc(cell, ch);
	}
	cm_errf(errbuf, "line %d: a quoted cell is never closed", start);
	return CM_EINVAL;
}

/* The record at pos; at_end tells a blank line from a record. */
static int
record(struct crm_csv *c, struct crm_csv_row *row, struct cm_buf *cell,
       char errbuf[CM_ERRBUF_LEN])
{
	int start = c->line, rc;
	char ch;

	for (;;) {
		if (c->pos < c->len && c->data[c->pos] == '"') {
			c->pos++;
			if ((rc = quoted(c, cell, start, errbuf)) < 0)
				return rc;
			if (c->pos < c->len && c->data[c->pos] != ',' &&
			    c->data[c->pos] != '\n' &&
			    c->data[c->pos] != '\r') {
				cm_errf(errbuf,
					"line %d: text after a closing "
					"quote",
					c->line);
				return CM_EINVAL;
			}
		}
		while (c->pos < c->len && (ch = c->data[c->pos]) != ',' &&
		       ch != '\n' && ch != '\r') {
			cm_buf_putc(cell, ch);
			c->pos++;
		}
		if ((rc = add_cell(row, cell, start, errbuf)) < 0)
			return rc;
		if (c->pos >= c->len)
			return 0;
		ch = c->data[c->pos++];
		if (ch == ',')
			continue;
		if (ch == '\r' && c->pos < c->len && c->data[c->pos] == '\n')
			c->pos++;
		c->line++;
		return 0;
	}
}

int
crm_csv_next(struct crm_csv *c, struct crm_csv_row *row,
	     char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf cell = CM_BUF_INIT(CRM_CSV_MAX_CELL);
	int rc;

	row->n = 0;
	for (;;) {
		if (c->pos >= c->len)
			return CM_ENOENT;
		if (c->data[c->pos] == '\n' || c->data[c->pos] == '\r') {
			if (c->data[c->pos] == '\n')
				c->line++;
			c->pos++;
			continue; /* a blank line */
		}
		break;
	}
	rc = record(c, row, &cell, errbuf);
	cm_buf_release(&cell);
	if (rc < 0)
		crm_csv_row_release(row);
	return rc;
}

void
crm_csv_put(struct cm_buf *b, const char *cell)
{
	bool quote = strpbrk(cell, ",\"\r\n") != NULL;
	const char *p;

	if (quote)
		cm_buf_putc(b, '"');
	if (strchr("=+-@\t", cell[0]) && cell[0])
		cm_buf_putc(b, '\'');
	for (p = cell; *p; p++) {
		if (*p == '"')
			cm_buf_putc(b, '"');
		cm_buf_putc(b, *p);
	}
	if (quote)
		cm_buf_putc(b, '"');
}
