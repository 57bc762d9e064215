"""Reference data for normalising location identifiers: ISO 3166-1 countries and US states.

Facts, not logic: each country's alpha-2 and alpha-3 code, its ITU-T E.164 calling code ("-" where none is
assigned) and its English short name, plus the aliases people actually type into CRMs ("USA", "UK",
"Deutschland"). :mod:`connectors.meta.hashing` reads the lookup tables built at the bottom.
"""

from __future__ import annotations

import unicodedata

# alpha-2 alpha-3 calling-code name
_COUNTRY_TABLE = """
AD AND 376 Andorra
AE ARE 971 United Arab Emirates
AF AFG 93 Afghanistan
AG ATG 1 Antigua and Barbuda
AI AIA 1 Anguilla
AL ALB 355 Albania
AM ARM 374 Armenia
AO AGO 244 Angola
AQ ATA 672 Antarctica
AR ARG 54 Argentina
AS ASM 1 American Samoa
AT AUT 43 Austria
AU AUS 61 Australia
AW ABW 297 Aruba
AX ALA 358 Aland Islands
AZ AZE 994 Azerbaijan
BA BIH 387 Bosnia and Herzegovina
BB BRB 1 Barbados
BD BGD 880 Bangladesh
BE BEL 32 Belgium
BF BFA 226 Burkina Faso
BG BGR 359 Bulgaria
BH BHR 973 Bahrain
BI BDI 257 Burundi
BJ BEN 229 Benin
BL BLM 590 Saint Barthelemy
BM BMU 1 Bermuda
BN BRN 673 Brunei Darussalam
BO BOL 591 Bolivia
BQ BES 599 Bonaire, Sint Eustatius and Saba
BR BRA 55 Brazil
BS BHS 1 Bahamas
BT BTN 975 Bhutan
BV BVT - Bouvet Island
BW BWA 267 Botswana
BY BLR 375 Belarus
BZ BLZ 501 Belize
CA CAN 1 Canada
CC CCK 61 Cocos Islands
CD COD 243 Democratic Republic of the Congo
CF CAF 236 Central African Republic
CG COG 242 Congo
CH CHE 41 Switzerland
CI CIV 225 Cote d'Ivoire
CK COK 682 Cook Islands
CL CHL 56 Chile
CM CMR 237 Cameroon
CN CHN 86 China
CO COL 57 Colombia
CR CRI 506 Costa Rica
CU CUB 53 Cuba
CV CPV 238 Cabo Verde
CW CUW 599 Curacao
CX CXR 61 Christmas Island
CY CYP 357 Cyprus
CZ CZE 420 Czechia
DE DEU 49 Germany
DJ DJI 253 Djibouti
DK DNK 45 Denmark
DM DMA 1 Dominica
DO DOM 1 Dominican Republic
DZ DZA 213 Algeria
EC ECU 593 Ecuador
EE EST 372 Estonia
EG EGY 20 Egypt
EH ESH 212 Western Sahara
ER ERI 291 Eritrea
ES ESP 34 Spain
ET ETH 251 Ethiopia
FI FIN 358 Finland
FJ FJI 679 Fiji
FK FLK 500 Falkland Islands
FM FSM 691 Micronesia
FO FRO 298 Faroe Islands
FR FRA 33 France
GA GAB 241 Gabon
GB GBR 44 United Kingdom
GD GRD 1 Grenada
GE GEO 995 Georgia
GF GUF 594 French Guiana
GG GGY 44 Guernsey
GH GHA 233 Ghana
GI GIB 350 Gibraltar
GL GRL 299 Greenland
GM GMB 220 Gambia
GN GIN 224 Guinea
GP GLP 590 Guadeloupe
GQ GNQ 240 Equatorial Guinea
GR GRC 30 Greece
GS SGS 500 South Georgia and the South Sandwich Islands
GT GTM 502 Guatemala
GU GUM 1 Guam
GW GNB 245 Guinea-Bissau
GY GUY 592 Guyana
HK HKG 852 Hong Kong
HM HMD - Heard Island and McDonald Islands
HN HND 504 Honduras
HR HRV 385 Croatia
HT HTI 509 Haiti
HU HUN 36 Hungary
ID IDN 62 Indonesia
IE IRL 353 Ireland
IL ISR 972 Israel
IM IMN 44 Isle of Man
IN IND 91 India
IO IOT 246 British Indian Ocean Territory
IQ IRQ 964 Iraq
IR IRN 98 Iran
IS ISL 354 Iceland
IT ITA 39 Italy
JE JEY 44 Jersey
JM JAM 1 Jamaica
JO JOR 962 Jordan
JP JPN 81 Japan
KE KEN 254 Kenya
KG KGZ 996 Kyrgyzstan
KH KHM 855 Cambodia
KI KIR 686 Kiribati
KM COM 269 Comoros
KN KNA 1 Saint Kitts and Nevis
KP PRK 850 North Korea
KR KOR 82 South Korea
KW KWT 965 Kuwait
KY CYM 1 Cayman Islands
KZ KAZ 7 Kazakhstan
LA LAO 856 Laos
LB LBN 961 Lebanon
LC LCA 1 Saint Lucia
LI LIE 423 Liechtenstein
LK LKA 94 Sri Lanka
LR LBR 231 Liberia
LS LSO 266 Lesotho
LT LTU 370 Lithuania
LU LUX 352 Luxembourg
LV LVA 371 Latvia
LY LBY 218 Libya
MA MAR 212 Morocco
MC MCO 377 Monaco
MD MDA 373 Moldova
ME MNE 382 Montenegro
MF MAF 590 Saint Martin
MG MDG 261 Madagascar
MH MHL 692 Marshall Islands
MK MKD 389 North Macedonia
ML MLI 223 Mali
MM MMR 95 Myanmar
MN MNG 976 Mongolia
MO MAC 853 Macao
MP MNP 1 Northern Mariana Islands
MQ MTQ 596 Martinique
MR MRT 222 Mauritania
MS MSR 1 Montserrat
MT MLT 356 Malta
MU MUS 230 Mauritius
MV MDV 960 Maldives
MW MWI 265 Malawi
MX MEX 52 Mexico
MY MYS 60 Malaysia
MZ MOZ 258 Mozambique
NA NAM 264 Namibia
NC NCL 687 New Caledonia
NE NER 227 Niger
NF NFK 672 Norfolk Island
NG NGA 234 Nigeria
NI NIC 505 Nicaragua
NL NLD 31 Netherlands
NO NOR 47 Norway
NP NPL 977 Nepal
NR NRU 674 Nauru
NU NIU 683 Niue
NZ NZL 64 New Zealand
OM OMN 968 Oman
PA PAN 507 Panama
PE PER 51 Peru
PF PYF 689 French Polynesia
PG PNG 675 Papua New Guinea
PH PHL 63 Philippines
PK PAK 92 Pakistan
PL POL 48 Poland
PM SPM 508 Saint Pierre and Miquelon
PN PCN 64 Pitcairn
PR PRI 1 Puerto Rico
PS PSE 970 Palestine
PT PRT 351 Portugal
PW PLW 680 Palau
PY PRY 595 Paraguay
QA QAT 974 Qatar
RE REU 262 Reunion
RO ROU 40 Romania
RS SRB 381 Serbia
RU RUS 7 Russia
RW RWA 250 Rwanda
SA SAU 966 Saudi Arabia
SB SLB 677 Solomon Islands
SC SYC 248 Seychelles
SD SDN 249 Sudan
SE SWE 46 Sweden
SG SGP 65 Singapore
SH SHN 290 Saint Helena
SI SVN 386 Slovenia
SJ SJM 47 Svalbard and Jan Mayen
SK SVK 421 Slovakia
SL SLE 232 Sierra Leone
SM SMR 378 San Marino
SN SEN 221 Senegal
SO SOM 252 Somalia
SR SUR 597 Suriname
SS SSD 211 South Sudan
ST STP 239 Sao Tome and Principe
SV SLV 503 El Salvador
SX SXM 1 Sint Maarten
SY SYR 963 Syria
SZ SWZ 268 Eswatini
TC TCA 1 Turks and Caicos Islands
TD TCD 235 Chad
TF ATF 262 French Southern Territories
TG TGO 228 Togo
TH THA 66 Thailand
TJ TJK 992 Tajikistan
TK TKL 690 Tokelau
TL TLS 670 Timor-Leste
TM TKM 993 Turkmenistan
TN TUN 216 Tunisia
TO TON 676 Tonga
TR TUR 90 Turkiye
TT TTO 1 Trinidad and Tobago
TV TUV 688 Tuvalu
TW TWN 886 Taiwan
TZ TZA 255 Tanzania
UA UKR 380 Ukraine
UG UGA 256 Uganda
UM UMI - United States Minor Outlying Islands
US USA 1 United States
UY URY 598 Uruguay
UZ UZB 998 Uzbekistan
VA VAT 39 Holy See
VC VCT 1 Saint Vincent and the Grenadines
VE VEN 58 Venezuela
VG VGB 1 British Virgin Islands
VI VIR 1 US Virgin Islands
VN VNM 84 Vietnam
VU VUT 678 Vanuatu
WF WLF 681 Wallis and Futuna
WS WSM 685 Samoa
YE YEM 967 Yemen
YT MYT 262 Mayotte
ZA ZAF 27 South Africa
ZM ZMB 260 Zambia
ZW ZWE 263 Zimbabwe
"""

# Names people type that are not the table's English short name (keys are compared after name_key()).
_COUNTRY_ALIASES: dict[str, str] = {
    "unitedstatesofamerica": "us", "america": "us", "usa": "us", "us": "us",
    "uk": "gb", "greatbritain": "gb", "britain": "gb", "england": "gb", "scotland": "gb", "wales": "gb",
    "northernireland": "gb", "unitedkingdomofgreatbritainandnorthernireland": "gb",
    "uae": "ae", "emirates": "ae",
    "turkey": "tr", "russianfederation": "ru", "korea": "kr", "republicofkorea": "kr",
    "democraticpeoplesrepublicofkorea": "kp", "vietnam": "vn", "vietnamese": "vn", "czechrepublic": "cz",
    "holland": "nl", "thenetherlands": "nl", "iranislamicrepublicof": "ir", "syrianarabrepublic": "sy",
    "laopeoplesdemocraticrepublic": "la", "boliviaplurinationalstateof": "bo", "venezuelabolivarianrepublicof": "ve",
    "unitedrepublicoftanzania": "tz", "republicofmoldova": "md", "macedonia": "mk", "swaziland": "sz",
    "ivorycoast": "ci", "capeverde": "cv", "burma": "mm", "vatican": "va", "vaticancity": "va",
    "drc": "cd", "drcongo": "cd", "congokinshasa": "cd", "congobrazzaville": "cg", "republicofthecongo": "cg",
    "brunei": "bn", "hongkongsar": "hk", "macau": "mo", "palestinianterritories": "ps", "stateofpalestine": "ps",
    "micronesiafederatedstatesof": "fm", "falklandislandsmalvinas": "fk", "eastimor": "tl",
    "republicofireland": "ie", "eire": "ie", "saintbarthelemy": "bl", "stbarthelemy": "bl",
    # common local names
    "deutschland": "de", "osterreich": "at", "schweiz": "ch", "suisse": "ch", "svizzera": "ch",
    "espana": "es", "italia": "it", "brasil": "br", "nederland": "nl", "belgique": "be", "belgie": "be",
    "sverige": "se", "norge": "no", "danmark": "dk", "suomi": "fi", "polska": "pl", "ceskarepublika": "cz",
    "cesko": "cz", "magyarorszag": "hu", "hellas": "gr", "ellada": "gr", "nippon": "jp", "nihon": "jp",
    "zhongguo": "cn", "mexique": "mx", "portugal": "pt", "eesti": "ee", "lietuva": "lt", "latvija": "lv",
    "hrvatska": "hr", "slovensko": "sk", "slovenija": "si", "romania": "ro", "bulgariya": "bg",
}

_US_STATES = """
AL Alabama|AK Alaska|AZ Arizona|AR Arkansas|CA California|CO Colorado|CT Connecticut|DE Delaware
|DC District of Columbia|FL Florida|GA Georgia|HI Hawaii|ID Idaho|IL Illinois|IN Indiana|IA Iowa|KS Kansas
|KY Kentucky|LA Louisiana|ME Maine|MD Maryland|MA Massachusetts|MI Michigan|MN Minnesota|MS Mississippi
|MO Missouri|MT Montana|NE Nebraska|NV Nevada|NH New Hampshire|NJ New Jersey|NM New Mexico|NY New York
|NC North Carolina|ND North Dakota|OH Ohio|OK Oklahoma|OR Oregon|PA Pennsylvania|RI Rhode Island
|SC South Carolina|SD South Dakota|TN Tennessee|TX Texas|UT Utah|VT Vermont|VA Virginia|WA Washington
|WV West Virginia|WI Wisconsin|WY Wyoming|AS American Samoa|GU Guam|MP Northern Mariana Islands
|PR Puerto Rico|VI US Virgin Islands|UM United States Minor Outlying Islands
"""


def name_key(text: str) -> str:
    """A spelling-insensitive key: accents folded, lowercase, letters only ("Côte d'Ivoire" → "cotedivoire")."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in folded if ch.isalpha() and not unicodedata.combining(ch)).lower()


def _countries() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    alpha2: dict[str, str] = {}  # alpha-2 lower -> calling code ("" when none)
    alpha3: dict[str, str] = {}  # alpha-3 lower -> alpha-2 lower
    names: dict[str, str] = {}  # name_key -> alpha-2 lower
    for line in _COUNTRY_TABLE.strip().splitlines():
        two, three, code, name = line.split(" ", 3)
        alpha2[two.lower()] = "" if code == "-" else code
        alpha3[three.lower()] = two.lower()
        names[name_key(name)] = two.lower()
    names.update(_COUNTRY_ALIASES)
    return alpha2, alpha3, names


CALLING_CODES, ALPHA3, COUNTRY_NAMES = _countries()

US_STATES: dict[str, str] = {
    name_key(name): code.lower()
    for code, name in (entry.strip().split(" ", 1) for entry in _US_STATES.replace("\n", "").split("|"))
}
US_STATE_CODES = frozenset(US_STATES.values())

# North American Numbering Plan members: national numbers are 10 digits and never start with 1.
NANP = frozenset(country for country, code in CALLING_CODES.items() if code == "1")

# Countries whose national trunk "0" stays in the international number (+39 06 …): not a trunk prefix.
KEEPS_LEADING_ZERO = frozenset({"it", "sm", "va"})

__all__ = [
    "ALPHA3",
    "CALLING_CODES",
    "COUNTRY_NAMES",
    "KEEPS_LEADING_ZERO",
    "NANP",
    "US_STATES",
    "US_STATE_CODES",
    "name_key",
]
